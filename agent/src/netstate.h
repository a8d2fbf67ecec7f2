/*
 * netstate.h - is this node's address usable: what `node.address` resolves
 * to on the node's links and IPv4 addresses, and whether it is healthy.
 * Pure logic, no I/O: netwatch.h feeds it from netlink, tests feed it
 * tables.
 *
 * node.address is either a literal IPv4 address ("10.0.0.1") or the name
 * of an interface ("eth1"); agent_netstate_classify tells which.
 *
 *  - An address: healthy when an interface holds it and that link is up.
 *    When several interfaces hold it, the one whose link is up wins, then a
 *    primary over a secondary, then the interface of the previous state,
 *    then the lowest index.
 *  - An interface: its address is one of its primary (non-secondary) IPv4
 *    addresses: the previous state's address while it is still one of them
 *    (adding an address never moves the node), else the numerically lowest.
 *    A secondary address serves only when the interface has no primary one
 *    (a moment between netlink events). Healthy when the link is up and it
 *    has an address.
 *
 * A link is up when it is administratively up (IFF_UP) and has a carrier
 * (IFF_RUNNING or IFF_LOWER_UP), unless its operstate says it is not
 * usable yet (DORMANT: 802.1X waiting; TESTING). Other operstates do not
 * count: the kernel updates them after the flags (a link just set up
 * still says DOWN for a moment). Loopback is a link like the others:
 * 127.0.0.1 on lo is healthy while lo is up.
 *
 * Reasons (when not healthy), first match wins:
 *
 *     no interface named eth1
 *     address 10.0.0.1 is on no interface
 *     link eth1 is down                    (administratively down)
 *     link eth1 is down (no carrier)       (cable out, veth peer down)
 *     link eth1 is down (dormant)          (also: testing)
 *     interface eth1 has no IPv4 address
 *
 *     agent_netstate st;
 *     agent_netstate_eval("eth1", links, nlinks, addrs, naddrs, &prev, &st);
 *     unsigned what = agent_netstate_diff(&prev, &st);
 *     if (what & AGENT_NETSTATE_ADDRESS) ... re-announce st.address
 */
#ifndef AGENT_NETSTATE_H
#define AGENT_NETSTATE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"

/* IFNAMSIZ: 15 characters and the NUL */
#define AGENT_NETSTATE_IFNAME_MAX 16
/* INET_ADDRSTRLEN */
#define AGENT_NETSTATE_ADDR_MAX 16
#define AGENT_NETSTATE_REASON_MAX DPR_ERR_MSG_MAX

/* What node.address names (agent_netstate_classify). */
typedef enum agent_netwant {
    AGENT_NETWANT_ADDRESS = 1,   /* a literal IPv4 address */
    AGENT_NETWANT_INTERFACE = 2, /* an interface name */
} agent_netwant;

/* A link (an RTM_NEWLINK of family AF_UNSPEC). */
typedef struct agent_netif {
    int ifindex;
    char name[AGENT_NETSTATE_IFNAME_MAX];
    unsigned flags;    /* IFF_* (IFF_UP, IFF_RUNNING, IFF_LOWER_UP ...) */
    uint8_t operstate; /* IF_OPER_* of linux/if.h; 0 (IF_OPER_UNKNOWN) when not known */
} agent_netif;

/* An IPv4 address of a link (its IFA_LOCAL). */
typedef struct agent_netaddr {
    int ifindex;
    struct in_addr addr;
    unsigned prefixlen;
    bool secondary; /* IFA_F_SECONDARY */
} agent_netaddr;

/* What node.address resolves to, and whether it is usable. */
typedef struct agent_netstate {
    bool by_name; /* node.address names an interface */
    /* The address to use: the literal itself, or the interface's chosen
     * address ("" when it has none). */
    char address[AGENT_NETSTATE_ADDR_MAX];
    unsigned prefixlen; /* of that address on its interface; 0 when on none */
    /* The interface that holds the address, or the named one ("" and 0
     * when none). */
    char ifname[AGENT_NETSTATE_IFNAME_MAX];
    int ifindex;
    bool link_up;                           /* that interface's link is up */
    bool have_address;                      /* the address is on that interface */
    bool healthy;                           /* link_up && have_address */
    char reason[AGENT_NETSTATE_REASON_MAX]; /* why not healthy; "" when healthy */
} agent_netstate;

/* What changed between two states (agent_netstate_diff). */
enum {
    /* address, prefix length or have_address */
    AGENT_NETSTATE_ADDRESS = 1u << 0,
    /* the interface: another index or another name (renamed, re-created,
     * the address moved) */
    AGENT_NETSTATE_INTERFACE = 1u << 1,
    AGENT_NETSTATE_LINK_DOWN = 1u << 2, /* link_up went true -> false */
    AGENT_NETSTATE_LINK_UP = 1u << 3,   /* link_up went false -> true */
    AGENT_NETSTATE_UNHEALTHY = 1u << 4, /* healthy went true -> false */
    AGENT_NETSTATE_HEALTHY = 1u << 5,   /* healthy went false -> true */
    AGENT_NETSTATE_REASON = 1u << 6,    /* the reason text (or by_name) */
};

/* Is s a literal IPv4 address in dotted-quad form ("10.0.0.1"; no
 * leading zeros, no shorthand)? */
bool agent_netstate_is_ipv4(const char *s);

/* Is name a valid Linux interface name: 1..15 characters, no '/', ':' or
 * white space, not "." or ".."? (The kernel's dev_valid_name.) */
bool agent_netstate_ifname_valid(const char *name);

/*
 * What want (node.address) names: AGENT_NETWANT_ADDRESS or
 * AGENT_NETWANT_INTERFACE; -EINVAL with a message in err for anything else:
 * an empty string, digits and dots that are no IPv4 address ("10.0.0"), the
 * wildcard 0.0.0.0, a multicast or the broadcast address, an IPv6 address,
 * an alias label ("eth0:1"), a name the kernel would refuse. The message
 * quotes want; a caller puts "node.address: " in front.
 */
int agent_netstate_classify(const char *want, dpr_err *err);

/*
 * Evaluates want against the node's links and IPv4 addresses into *out.
 * prev is the previous state of the same want, or NULL: it keeps the
 * chosen address and interface stable (see above). Addresses of an ifindex
 * that is not among links are ignored (an interface that vanished). The
 * order of links and addrs does not matter.
 * 0, or -EINVAL when want is invalid (agent_netstate_classify): *out is
 * then unhealthy with the message as its reason.
 */
int agent_netstate_eval(const char *want, const agent_netif *links, size_t nlinks,
                        const agent_netaddr *addrs, size_t naddrs, const agent_netstate *prev,
                        agent_netstate *out);

/* What differs between before and now: AGENT_NETSTATE_* bits; 0 exactly
 * when every field is equal. */
unsigned agent_netstate_diff(const agent_netstate *before, const agent_netstate *now);

#endif
