/* test_agent_netstate.c - what node.address resolves to on a node's links
 * and addresses (netstate.h): literal addresses and interface names, which
 * address an interface gives (primary, stable), link states, reasons, and
 * what a change between two states says. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <string.h>

#include "check.h"
#include "netstate.h"

#define UP_FLAGS (IFF_UP | IFF_RUNNING | IFF_LOWER_UP)

static agent_netif link_of(int ifindex, const char *name, unsigned flags, uint8_t operstate)
{
    agent_netif l;

    memset(&l, 0, sizeof(l));
    l.ifindex = ifindex;
    strncpy(l.name, name, sizeof(l.name) - 1);
    l.flags = flags;
    l.operstate = operstate;
    return l;
}

static agent_netaddr addr_of(int ifindex, const char *text, unsigned prefixlen, bool secondary)
{
    agent_netaddr a;

    memset(&a, 0, sizeof(a));
    a.ifindex = ifindex;
    inet_pton(AF_INET, text, &a.addr);
    a.prefixlen = prefixlen;
    a.secondary = secondary;
    return a;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* eval with arrays; prev may be NULL */
#define EVAL(want, links, addrs, prev, st)                                                         \
    agent_netstate_eval(want, links, N(links), addrs, N(addrs), prev, st)

TEST(ipv4_literals)
{
    CHECK(agent_netstate_is_ipv4("10.0.0.1"));
    CHECK(agent_netstate_is_ipv4("127.0.0.1"));
    CHECK(agent_netstate_is_ipv4("255.255.255.255"));
    CHECK(!agent_netstate_is_ipv4("10.0.0"));
    CHECK(!agent_netstate_is_ipv4("10.0.0.256"));
    CHECK(!agent_netstate_is_ipv4("10.0.0.01"));
    CHECK(!agent_netstate_is_ipv4("10.0.0.1 "));
    CHECK(!agent_netstate_is_ipv4("::1"));
    CHECK(!agent_netstate_is_ipv4("eth0"));
    CHECK(!agent_netstate_is_ipv4(""));
}

TEST(interface_names)
{
    CHECK(agent_netstate_ifname_valid("eth1"));
    CHECK(agent_netstate_ifname_valid("lo"));
    CHECK(agent_netstate_ifname_valid("a"));
    CHECK(agent_netstate_ifname_valid("enp0s31f6"));
    CHECK(agent_netstate_ifname_valid("br-0.100"));
    CHECK(agent_netstate_ifname_valid("123456789012345")); /* 15: the most */
    CHECK(!agent_netstate_ifname_valid("1234567890123456"));
    CHECK(!agent_netstate_ifname_valid(""));
    CHECK(!agent_netstate_ifname_valid("."));
    CHECK(!agent_netstate_ifname_valid(".."));
    CHECK(agent_netstate_ifname_valid("..."));
    CHECK(!agent_netstate_ifname_valid("a/b"));
    CHECK(!agent_netstate_ifname_valid("eth0:1"));
    CHECK(!agent_netstate_ifname_valid("eth 0"));
    CHECK(!agent_netstate_ifname_valid("eth0\n"));
    CHECK(!agent_netstate_ifname_valid("\teth0"));
}

TEST(classify)
{
    dpr_err err = DPR_ERR_INIT;

    CHECK_EQ_INT(agent_netstate_classify("10.0.0.1", &err), AGENT_NETWANT_ADDRESS);
    CHECK_EQ_INT(agent_netstate_classify("127.0.0.1", &err), AGENT_NETWANT_ADDRESS);
    CHECK_EQ_INT(agent_netstate_classify("eth1", &err), AGENT_NETWANT_INTERFACE);
    CHECK_EQ_INT(agent_netstate_classify("lo", &err), AGENT_NETWANT_INTERFACE);
    CHECK_EQ_INT(agent_netstate_classify("eth1", NULL), AGENT_NETWANT_INTERFACE);

    CHECK_EQ_INT(agent_netstate_classify("", &err), -EINVAL);
    CHECK(strstr(err.msg, "empty") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("10.0.0", &err), -EINVAL);
    CHECK(strcmp(err.msg, "'10.0.0' is not a valid IPv4 address") == 0);
    CHECK_EQ_INT(agent_netstate_classify("10.0.0.300", &err), -EINVAL);
    CHECK(strstr(err.msg, "not a valid IPv4 address") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("0.0.0.0", &err), -EINVAL);
    CHECK(strstr(err.msg, "wildcard") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("224.0.0.251", &err), -EINVAL);
    CHECK(strstr(err.msg, "multicast") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("255.255.255.255", &err), -EINVAL);
    CHECK(strstr(err.msg, "broadcast") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("fe80::1", &err), -EINVAL);
    CHECK(strstr(err.msg, "IPv6") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("eth0:1", &err), -EINVAL);
    CHECK(strstr(err.msg, "'eth0:1'") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("averyveryverylongname", &err), -EINVAL);
    CHECK(strstr(err.msg, "at most 15") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("a/b", &err), -EINVAL);
    CHECK(strstr(err.msg, "neither an IPv4 address nor an interface name") != NULL);
    CHECK_EQ_INT(agent_netstate_classify("..", &err), -EINVAL);
    CHECK_EQ_INT(agent_netstate_classify("eth 1", NULL), -EINVAL);
}

TEST(invalid_want_is_unhealthy)
{
    agent_netif links[] = {link_of(1, "lo", UP_FLAGS | IFF_LOOPBACK, IF_OPER_UNKNOWN)};
    agent_netaddr addrs[] = {addr_of(1, "127.0.0.1", 8, false)};
    agent_netstate st;

    CHECK_EQ_INT(EVAL("0.0.0.0", links, addrs, NULL, &st), -EINVAL);
    CHECK(!st.healthy);
    CHECK(!st.link_up);
    CHECK(!st.have_address);
    CHECK(strstr(st.reason, "wildcard") != NULL);
}

TEST(literal_address)
{
    agent_netif links[] = {
        link_of(1, "lo", UP_FLAGS | IFF_LOOPBACK, IF_OPER_UNKNOWN),
        link_of(2, "eth0", UP_FLAGS, IF_OPER_UP),
        link_of(3, "eth1", UP_FLAGS, IF_OPER_UP),
    };
    agent_netaddr addrs[] = {
        addr_of(1, "127.0.0.1", 8, false),
        addr_of(2, "192.168.1.10", 24, false),
        addr_of(3, "10.0.0.1", 24, false),
        addr_of(3, "10.0.0.7", 24, true),
    };
    agent_netstate st;

    CHECK_EQ_INT(EVAL("10.0.0.1", links, addrs, NULL, &st), 0);
    CHECK(!st.by_name);
    CHECK(strcmp(st.address, "10.0.0.1") == 0);
    CHECK_EQ_INT(st.prefixlen, 24);
    CHECK(strcmp(st.ifname, "eth1") == 0);
    CHECK_EQ_INT(st.ifindex, 3);
    CHECK(st.link_up);
    CHECK(st.have_address);
    CHECK(st.healthy);
    CHECK(strcmp(st.reason, "") == 0);

    /* a secondary address is an address of the node too */
    CHECK_EQ_INT(EVAL("10.0.0.7", links, addrs, NULL, &st), 0);
    CHECK(st.healthy);
    CHECK(strcmp(st.ifname, "eth1") == 0);

    /* on no interface: the address is still what it is */
    CHECK_EQ_INT(EVAL("10.0.0.2", links, addrs, NULL, &st), 0);
    CHECK(strcmp(st.address, "10.0.0.2") == 0);
    CHECK(!st.have_address);
    CHECK(!st.link_up);
    CHECK(!st.healthy);
    CHECK(strcmp(st.ifname, "") == 0);
    CHECK_EQ_INT(st.ifindex, 0);
    CHECK_EQ_INT(st.prefixlen, 0);
    CHECK(strcmp(st.reason, "address 10.0.0.2 is on no interface") == 0);

    /* the same address on an interface the tables do not know (it vanished) */
    agent_netaddr stale[] = {addr_of(9, "10.0.0.2", 24, false)};
    CHECK_EQ_INT(EVAL("10.0.0.2", links, stale, NULL, &st), 0);
    CHECK(strcmp(st.reason, "address 10.0.0.2 is on no interface") == 0);
}

TEST(loopback)
{
    agent_netif links[] = {link_of(1, "lo", UP_FLAGS | IFF_LOOPBACK, IF_OPER_UNKNOWN)};
    agent_netif down[] = {link_of(1, "lo", IFF_LOOPBACK, IF_OPER_UNKNOWN)};
    agent_netaddr addrs[] = {addr_of(1, "127.0.0.1", 8, false)};
    agent_netaddr none[] = {addr_of(7, "10.9.9.9", 8, false)};
    agent_netstate st;

    CHECK_EQ_INT(EVAL("127.0.0.1", links, addrs, NULL, &st), 0);
    CHECK(st.healthy);
    CHECK(strcmp(st.ifname, "lo") == 0);
    CHECK_EQ_INT(EVAL("lo", links, addrs, NULL, &st), 0);
    CHECK(st.healthy);
    CHECK(st.by_name);
    CHECK(strcmp(st.address, "127.0.0.1") == 0);
    CHECK_EQ_INT(st.prefixlen, 8);

    CHECK_EQ_INT(EVAL("127.0.0.1", down, addrs, NULL, &st), 0);
    CHECK(!st.healthy);
    CHECK(st.have_address);
    CHECK(strcmp(st.reason, "link lo is down") == 0);
    /* a new network namespace: lo down and without 127.0.0.1 */
    CHECK_EQ_INT(EVAL("127.0.0.1", down, none, NULL, &st), 0);
    CHECK(strcmp(st.reason, "address 127.0.0.1 is on no interface") == 0);
    CHECK_EQ_INT(EVAL("lo", down, none, NULL, &st), 0);
    CHECK(strcmp(st.reason, "link lo is down") == 0);
}

TEST(link_states)
{
    agent_netaddr addrs[] = {addr_of(2, "10.0.0.1", 24, false)};
    static const struct {
        unsigned flags;
        uint8_t operstate;
        bool up;
        const char *reason;
    } cases[] = {
        {IFF_UP | IFF_RUNNING | IFF_LOWER_UP, IF_OPER_UP, true, ""},
        /* loopback, dummy: operstate unknown */
        {IFF_UP | IFF_RUNNING | IFF_LOWER_UP, IF_OPER_UNKNOWN, true, ""},
        /* either of the carrier flags will do */
        {IFF_UP | IFF_RUNNING, IF_OPER_UNKNOWN, true, ""},
        {IFF_UP | IFF_LOWER_UP, IF_OPER_UNKNOWN, true, ""},
        /* set down */
        {0, IF_OPER_DOWN, false, "link eth1 is down"},
        {IFF_RUNNING | IFF_LOWER_UP, IF_OPER_UP, false, "link eth1 is down"},
        /* up without carrier (cable out, veth peer down), whatever the
         * operstate says */
        {IFF_UP, IF_OPER_DOWN, false, "link eth1 is down (no carrier)"},
        {IFF_UP, IF_OPER_UNKNOWN, false, "link eth1 is down (no carrier)"},
        {IFF_UP, IF_OPER_LOWERLAYERDOWN, false, "link eth1 is down (no carrier)"},
        {IFF_UP, IF_OPER_UP, false, "link eth1 is down (no carrier)"},
        /* a carrier before the kernel updated the operstate: up */
        {IFF_UP | IFF_LOWER_UP, IF_OPER_DOWN, true, ""},
        {IFF_UP | IFF_LOWER_UP, IF_OPER_LOWERLAYERDOWN, true, ""},
        /* a carrier, but not usable yet (802.1X) */
        {IFF_UP | IFF_LOWER_UP, IF_OPER_DORMANT, false, "link eth1 is down (dormant)"},
        {IFF_UP | IFF_LOWER_UP, IF_OPER_TESTING, false, "link eth1 is down (testing)"},
    };

    for (size_t i = 0; i < N(cases); i++) {
        agent_netif links[] = {link_of(2, "eth1", cases[i].flags, cases[i].operstate)};
        agent_netstate a, n;

        CHECK_EQ_INT(EVAL("eth1", links, addrs, NULL, &n), 0);
        CHECK_EQ_INT(EVAL("10.0.0.1", links, addrs, NULL, &a), 0);
        for (int k = 0; k < 2; k++) {
            const agent_netstate *st = k ? &a : &n;

            if (st->link_up != cases[i].up || strcmp(st->reason, cases[i].reason) != 0)
                fprintf(stderr, "  case %zu (%s): up %d reason '%s'\n", i,
                        k ? "address" : "interface", st->link_up, st->reason);
            CHECK_EQ_INT(st->link_up, cases[i].up);
            CHECK_EQ_INT(st->healthy, cases[i].up);
            CHECK(st->have_address);
            CHECK(strcmp(st->reason, cases[i].reason) == 0);
            CHECK(strcmp(st->ifname, "eth1") == 0);
        }
    }
}

TEST(interface_name)
{
    agent_netif links[] = {
        link_of(1, "lo", UP_FLAGS | IFF_LOOPBACK, IF_OPER_UNKNOWN),
        link_of(4, "eth1", UP_FLAGS, IF_OPER_UP),
    };
    agent_netaddr addrs[] = {
        addr_of(1, "127.0.0.1", 8, false),
        addr_of(4, "10.0.0.5", 24, false),
    };
    agent_netaddr none[] = {addr_of(1, "127.0.0.1", 8, false)};
    agent_netstate st;

    CHECK_EQ_INT(EVAL("eth1", links, addrs, NULL, &st), 0);
    CHECK(st.by_name);
    CHECK(st.healthy);
    CHECK(strcmp(st.address, "10.0.0.5") == 0);
    CHECK_EQ_INT(st.prefixlen, 24);
    CHECK(strcmp(st.ifname, "eth1") == 0);
    CHECK_EQ_INT(st.ifindex, 4);

    CHECK_EQ_INT(EVAL("eth1", links, none, NULL, &st), 0);
    CHECK(st.link_up);
    CHECK(!st.have_address);
    CHECK(!st.healthy);
    CHECK(strcmp(st.address, "") == 0);
    CHECK(strcmp(st.ifname, "eth1") == 0);
    CHECK(strcmp(st.reason, "interface eth1 has no IPv4 address") == 0);

    CHECK_EQ_INT(EVAL("eth2", links, addrs, NULL, &st), 0);
    CHECK(!st.link_up);
    CHECK(!st.have_address);
    CHECK(strcmp(st.ifname, "") == 0);
    CHECK_EQ_INT(st.ifindex, 0);
    CHECK(strcmp(st.reason, "no interface named eth2") == 0);

    /* down and without address: the link is the first thing to fix */
    agent_netif down[] = {link_of(4, "eth1", 0, IF_OPER_DOWN)};
    CHECK_EQ_INT(EVAL("eth1", down, none, NULL, &st), 0);
    CHECK(strcmp(st.reason, "link eth1 is down") == 0);
    /* no links at all */
    CHECK_EQ_INT(agent_netstate_eval("eth1", NULL, 0, NULL, 0, NULL, &st), 0);
    CHECK(strcmp(st.reason, "no interface named eth1") == 0);
}

TEST(secondary_addresses)
{
    agent_netif links[] = {link_of(4, "eth1", UP_FLAGS, IF_OPER_UP)};
    /* secondaries are lower, and listed first: still the primary */
    agent_netaddr addrs[] = {
        addr_of(4, "10.0.0.2", 24, true),
        addr_of(4, "10.0.0.3", 24, true),
        addr_of(4, "10.0.0.9", 24, false),
    };
    /* only secondaries (between the deletion of a primary and the
     * promotion of its secondary): one of them serves */
    agent_netaddr only_secondary[] = {
        addr_of(4, "10.0.0.3", 24, true),
        addr_of(4, "10.0.0.2", 24, true),
    };
    agent_netstate st;

    CHECK_EQ_INT(EVAL("eth1", links, addrs, NULL, &st), 0);
    CHECK(strcmp(st.address, "10.0.0.9") == 0);
    CHECK(st.healthy);
    CHECK_EQ_INT(EVAL("eth1", links, only_secondary, NULL, &st), 0);
    CHECK(strcmp(st.address, "10.0.0.2") == 0);
    CHECK(st.healthy);
}

TEST(several_addresses_stable)
{
    agent_netif links[] = {link_of(4, "eth1", UP_FLAGS, IF_OPER_UP)};
    agent_netaddr addrs[] = {
        addr_of(4, "192.168.7.1", 24, false),
        addr_of(4, "10.1.0.5", 16, false),
        addr_of(4, "172.16.0.1", 12, false),
    };
    agent_netaddr reversed[] = {addrs[2], addrs[1], addrs[0]};
    agent_netaddr more[] = {
        addrs[0], addrs[1], addrs[2], addr_of(4, "10.0.0.1", 24, false), /* lower */
    };
    agent_netaddr fewer[] = {addrs[0], addrs[2], addr_of(4, "10.0.0.1", 24, false)};
    agent_netstate a, b, c, d;

    /* numerically lowest, whatever the order of the table */
    CHECK_EQ_INT(EVAL("eth1", links, addrs, NULL, &a), 0);
    CHECK(strcmp(a.address, "10.1.0.5") == 0);
    CHECK_EQ_INT(a.prefixlen, 16);
    CHECK_EQ_INT(EVAL("eth1", links, reversed, NULL, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b), 0);
    /* a lower address added: the node stays where it is */
    CHECK_EQ_INT(EVAL("eth1", links, more, &a, &c), 0);
    CHECK(strcmp(c.address, "10.1.0.5") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &c), 0);
    /* without a previous state, the lowest */
    CHECK_EQ_INT(EVAL("eth1", links, more, NULL, &c), 0);
    CHECK(strcmp(c.address, "10.0.0.1") == 0);
    /* its address removed: the lowest of the others */
    CHECK_EQ_INT(EVAL("eth1", links, fewer, &a, &d), 0);
    CHECK(strcmp(d.address, "10.0.0.1") == 0);
    CHECK_EQ_INT(d.prefixlen, 24);
    CHECK_EQ_INT(agent_netstate_diff(&a, &d), AGENT_NETSTATE_ADDRESS);
    /* a previous state whose address became a secondary does not keep it */
    agent_netaddr demoted[] = {addr_of(4, "10.1.0.5", 16, true), addr_of(4, "10.9.0.1", 16, false)};
    CHECK_EQ_INT(EVAL("eth1", links, demoted, &a, &d), 0);
    CHECK(strcmp(d.address, "10.9.0.1") == 0);
    /* the previous state of another want (a literal) does not stick */
    agent_netstate lit;
    CHECK_EQ_INT(EVAL("10.1.0.5", links, more, NULL, &lit), 0);
    CHECK_EQ_INT(EVAL("eth1", links, more, &lit, &d), 0);
    CHECK(strcmp(d.address, "10.0.0.1") == 0);
}

TEST(other_interfaces_do_not_count)
{
    agent_netif links[] = {
        link_of(2, "eth0", UP_FLAGS, IF_OPER_UP),
        link_of(3, "eth1", 0, IF_OPER_DOWN),
    };
    agent_netaddr addrs[] = {addr_of(2, "10.0.0.1", 24, false)};
    agent_netstate st;

    CHECK_EQ_INT(EVAL("eth1", links, addrs, NULL, &st), 0);
    CHECK(!st.have_address);
    CHECK(!st.link_up);
    CHECK(strcmp(st.reason, "link eth1 is down") == 0);
    CHECK_EQ_INT(st.ifindex, 3);
}

/* eth1 renamed to eth9 (its addresses stay with it), then another link
 * renamed to eth1. */
TEST(renamed_interface)
{
    agent_netif before[] = {
        link_of(3, "eth1", UP_FLAGS, IF_OPER_UP),
        link_of(5, "usb0", UP_FLAGS, IF_OPER_UP),
    };
    agent_netif renamed[] = {
        link_of(3, "eth9", UP_FLAGS, IF_OPER_UP),
        link_of(5, "usb0", UP_FLAGS, IF_OPER_UP),
    };
    agent_netif taken[] = {
        link_of(3, "eth9", UP_FLAGS, IF_OPER_UP),
        link_of(5, "eth1", UP_FLAGS, IF_OPER_UP),
    };
    agent_netaddr addrs[] = {
        addr_of(3, "10.0.0.5", 24, false),
        addr_of(5, "10.0.5.5", 24, false),
    };
    agent_netstate a, b, c, lit;

    CHECK_EQ_INT(EVAL("eth1", before, addrs, NULL, &a), 0);
    CHECK(a.healthy);
    CHECK(strcmp(a.address, "10.0.0.5") == 0);
    CHECK_EQ_INT(EVAL("eth1", renamed, addrs, &a, &b), 0);
    CHECK(!b.healthy);
    CHECK(strcmp(b.reason, "no interface named eth1") == 0);
    CHECK(strcmp(b.address, "") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b), AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_INTERFACE |
                                                  AGENT_NETSTATE_LINK_DOWN |
                                                  AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    CHECK_EQ_INT(EVAL("eth1", taken, addrs, &b, &c), 0);
    CHECK(c.healthy);
    CHECK(strcmp(c.address, "10.0.5.5") == 0);
    CHECK_EQ_INT(c.ifindex, 5);
    CHECK_EQ_INT(agent_netstate_diff(&a, &c), AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_INTERFACE);

    /* a literal follows its address, not the name */
    CHECK_EQ_INT(EVAL("10.0.0.5", renamed, addrs, NULL, &lit), 0);
    CHECK(lit.healthy);
    CHECK(strcmp(lit.ifname, "eth9") == 0);
    CHECK_EQ_INT(lit.ifindex, 3);
}

/* 10.0.0.1 moves from eth0 to eth1 (deleted here, added there), passing
 * through "on both" and "on none". */
TEST(literal_moves_between_interfaces)
{
    agent_netif links[] = {
        link_of(2, "eth0", UP_FLAGS, IF_OPER_UP),
        link_of(3, "eth1", UP_FLAGS, IF_OPER_UP),
    };
    agent_netif eth0_down[] = {
        link_of(2, "eth0", IFF_UP, IF_OPER_DOWN),
        link_of(3, "eth1", UP_FLAGS, IF_OPER_UP),
    };
    agent_netaddr on0[] = {addr_of(2, "10.0.0.1", 24, false)};
    agent_netaddr both[] = {addr_of(3, "10.0.0.1", 24, false), addr_of(2, "10.0.0.1", 24, false)};
    agent_netaddr on1[] = {addr_of(3, "10.0.0.1", 16, false)};
    agent_netaddr none[] = {addr_of(3, "10.0.0.2", 16, false)};
    agent_netstate a, b, c, d;

    CHECK_EQ_INT(EVAL("10.0.0.1", links, on0, NULL, &a), 0);
    CHECK(a.healthy);
    CHECK(strcmp(a.ifname, "eth0") == 0);
    /* on both: it stays on eth0 */
    CHECK_EQ_INT(EVAL("10.0.0.1", links, both, &a, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b), 0);
    /* without a previous state: the lowest index */
    CHECK_EQ_INT(EVAL("10.0.0.1", links, both, NULL, &b), 0);
    CHECK(strcmp(b.ifname, "eth0") == 0);
    /* on both, eth0 lost its carrier: the one that is up */
    CHECK_EQ_INT(EVAL("10.0.0.1", eth0_down, both, &a, &b), 0);
    CHECK(b.healthy);
    CHECK(strcmp(b.ifname, "eth1") == 0);
    /* on eth1 only */
    CHECK_EQ_INT(EVAL("10.0.0.1", links, on1, &a, &c), 0);
    CHECK(c.healthy);
    CHECK(strcmp(c.ifname, "eth1") == 0);
    CHECK_EQ_INT(c.ifindex, 3);
    CHECK(strcmp(c.address, "10.0.0.1") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &c), AGENT_NETSTATE_INTERFACE | AGENT_NETSTATE_ADDRESS);
    /* on eth1 now, and eth1 stays when it appears on eth0 again */
    CHECK_EQ_INT(EVAL("10.0.0.1", links, both, &c, &d), 0);
    CHECK(strcmp(d.ifname, "eth1") == 0);
    /* on none in between */
    CHECK_EQ_INT(EVAL("10.0.0.1", links, none, &a, &d), 0);
    CHECK(!d.healthy);
    CHECK_EQ_INT(agent_netstate_diff(&a, &d), AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_INTERFACE |
                                                  AGENT_NETSTATE_LINK_DOWN |
                                                  AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    /* a primary holder beats a secondary one */
    agent_netaddr mixed[] = {addr_of(2, "10.0.0.1", 24, true), addr_of(3, "10.0.0.1", 24, false)};
    CHECK_EQ_INT(EVAL("10.0.0.1", links, mixed, &a, &d), 0);
    CHECK(strcmp(d.ifname, "eth1") == 0);
}

TEST(diff)
{
    agent_netif up[] = {link_of(4, "eth1", UP_FLAGS, IF_OPER_UP)};
    agent_netif down[] = {link_of(4, "eth1", IFF_UP, IF_OPER_DOWN)};
    agent_netif off[] = {link_of(4, "eth1", 0, IF_OPER_DOWN)};
    agent_netaddr addrs[] = {addr_of(4, "10.0.0.5", 24, false)};
    agent_netaddr none[] = {addr_of(9, "10.0.0.5", 24, false)};
    agent_netaddr prefix[] = {addr_of(4, "10.0.0.5", 16, false)};
    agent_netstate a, b, c, e;

    CHECK_EQ_INT(EVAL("eth1", up, addrs, NULL, &a), 0);
    CHECK_EQ_INT(EVAL("eth1", up, addrs, &a, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &a), 0);

    CHECK_EQ_INT(EVAL("eth1", down, addrs, &a, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b),
                 AGENT_NETSTATE_LINK_DOWN | AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    CHECK_EQ_INT(agent_netstate_diff(&b, &a),
                 AGENT_NETSTATE_LINK_UP | AGENT_NETSTATE_HEALTHY | AGENT_NETSTATE_REASON);
    /* down either way; only the reason differs */
    CHECK_EQ_INT(EVAL("eth1", off, addrs, &b, &c), 0);
    CHECK_EQ_INT(agent_netstate_diff(&b, &c), AGENT_NETSTATE_REASON);

    CHECK_EQ_INT(EVAL("eth1", up, none, &a, &e), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &e),
                 AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    CHECK_EQ_INT(EVAL("eth1", up, prefix, &a, &e), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &e), AGENT_NETSTATE_ADDRESS);

    /* a literal that appears on its interface */
    CHECK_EQ_INT(EVAL("10.0.0.5", up, none, NULL, &b), 0);
    CHECK_EQ_INT(EVAL("10.0.0.5", up, addrs, &b, &c), 0);
    CHECK_EQ_INT(agent_netstate_diff(&b, &c), AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_INTERFACE |
                                                  AGENT_NETSTATE_LINK_UP | AGENT_NETSTATE_HEALTHY |
                                                  AGENT_NETSTATE_REASON);
    /* the same address by name and by literal: by_name differs */
    CHECK_EQ_INT(EVAL("10.0.0.5", up, addrs, NULL, &b), 0);
    CHECK_EQ_INT(agent_netstate_diff(&a, &b), AGENT_NETSTATE_REASON);
}

int main(void)
{
    RUN(ipv4_literals);
    RUN(interface_names);
    RUN(classify);
    RUN(invalid_want_is_unhealthy);
    RUN(literal_address);
    RUN(loopback);
    RUN(link_states);
    RUN(interface_name);
    RUN(secondary_addresses);
    RUN(several_addresses_stable);
    RUN(other_interfaces_do_not_count);
    RUN(renamed_interface);
    RUN(literal_moves_between_interfaces);
    RUN(diff);
    return check_summary("test_agent_netstate");
}
