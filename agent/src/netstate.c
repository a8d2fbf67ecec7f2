/* netstate.c - see netstate.h. */
#include "netstate.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <linux/if.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

/* how much of an invalid want a message quotes */
#define QUOTE_MAX 40

bool agent_netstate_is_ipv4(const char *s)
{
    struct in_addr a;

    return inet_pton(AF_INET, s, &a) == 1;
}

bool agent_netstate_ifname_valid(const char *name)
{
    size_t n = strnlen(name, AGENT_NETSTATE_IFNAME_MAX);

    if (n == 0 || n >= AGENT_NETSTATE_IFNAME_MAX)
        return false;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        /* isspace() in the C locale, as the kernel's */
        if (*p == '/' || *p == ':' || strchr(" \t\n\v\f\r", *p))
            return false;
    return true;
}

static bool digits_and_dots(const char *s)
{
    return s[strspn(s, "0123456789.")] == '\0';
}

int agent_netstate_classify(const char *want, dpr_err *err)
{
    struct in_addr a;

    if (!want[0])
        return dpr_err_set(err, -EINVAL, "empty: an IPv4 address or an interface name is needed");
    if (inet_pton(AF_INET, want, &a) == 1) {
        uint32_t h = ntohl(a.s_addr);

        if (h == INADDR_ANY)
            return dpr_err_set(err, -EINVAL, "'%s' is a wildcard, not the address of a node", want);
        if (h == INADDR_BROADCAST)
            return dpr_err_set(err, -EINVAL, "'%s' is the broadcast address", want);
        if (IN_MULTICAST(h))
            return dpr_err_set(err, -EINVAL, "'%s' is a multicast address", want);
        return AGENT_NETWANT_ADDRESS;
    }
    if (digits_and_dots(want))
        return dpr_err_set(err, -EINVAL, "'%.*s' is not a valid IPv4 address", QUOTE_MAX, want);
    if (strchr(want, ':'))
        return dpr_err_set(err, -EINVAL,
                           "'%.*s' is neither an IPv4 address nor an interface name (IPv6 "
                           "addresses and alias labels such as eth0:1 are not supported)",
                           QUOTE_MAX, want);
    if (strlen(want) >= AGENT_NETSTATE_IFNAME_MAX)
        return dpr_err_set(err, -EINVAL,
                           "'%.*s' is neither an IPv4 address nor an interface name (those "
                           "have at most %d characters)",
                           QUOTE_MAX, want, AGENT_NETSTATE_IFNAME_MAX - 1);
    if (!agent_netstate_ifname_valid(want))
        return dpr_err_set(err, -EINVAL, "'%.*s' is neither an IPv4 address nor an interface name",
                           QUOTE_MAX, want);
    return AGENT_NETWANT_INTERFACE;
}

/* Why a link is not up, or NULL when it is. The carrier flags decide, not
 * the operstate, which the kernel reports later (linkwatch): a link just
 * set up has its carrier before its operstate says so. Only the
 * operstates that say "a carrier, but not usable" count. */
static const char *link_down_why(const agent_netif *l)
{
    if (!(l->flags & IFF_UP))
        return "";
    if (!(l->flags & (IFF_RUNNING | IFF_LOWER_UP)))
        return " (no carrier)";
    if (l->operstate == IF_OPER_DORMANT)
        return " (dormant)";
    if (l->operstate == IF_OPER_TESTING)
        return " (testing)";
    return NULL;
}

static const agent_netif *link_by_index(const agent_netif *links, size_t n, int ifindex)
{
    for (size_t i = 0; i < n; i++)
        if (links[i].ifindex == ifindex)
            return &links[i];
    return NULL;
}

/* The interface named name; the lowest index if a table holds it twice. */
static const agent_netif *link_by_name(const agent_netif *links, size_t n, const char *name)
{
    const agent_netif *best = NULL;

    for (size_t i = 0; i < n; i++)
        if (strncmp(links[i].name, name, sizeof(links[i].name)) == 0 &&
            (!best || links[i].ifindex < best->ifindex))
            best = &links[i];
    return best;
}

static void set_ifname(agent_netstate *st, const agent_netif *l)
{
    snprintf(st->ifname, sizeof(st->ifname), "%.*s", (int)sizeof(l->name) - 1, l->name);
    st->ifindex = l->ifindex;
}

/* Is a a better choice than b for an interface's address? */
static bool addr_better(const agent_netaddr *a, const agent_netaddr *b,
                        const struct in_addr *sticky)
{
    if (a->secondary != b->secondary)
        return !a->secondary;
    if (sticky && (a->addr.s_addr == sticky->s_addr) != (b->addr.s_addr == sticky->s_addr))
        return a->addr.s_addr == sticky->s_addr;
    return ntohl(a->addr.s_addr) < ntohl(b->addr.s_addr);
}

static void eval_interface(const char *want, const agent_netif *links, size_t nlinks,
                           const agent_netaddr *addrs, size_t naddrs, const agent_netstate *prev,
                           agent_netstate *st)
{
    const agent_netif *l = link_by_name(links, nlinks, want);
    const agent_netaddr *best = NULL;
    struct in_addr sticky;
    bool have_sticky = false;
    const char *why;

    if (!l) {
        snprintf(st->reason, sizeof(st->reason), "no interface named %s", want);
        return;
    }
    set_ifname(st, l);
    if (prev && prev->by_name && prev->address[0])
        have_sticky = inet_pton(AF_INET, prev->address, &sticky) == 1;
    for (size_t i = 0; i < naddrs; i++)
        if (addrs[i].ifindex == l->ifindex &&
            (!best || addr_better(&addrs[i], best, have_sticky ? &sticky : NULL)))
            best = &addrs[i];
    if (best) {
        inet_ntop(AF_INET, &best->addr, st->address, sizeof(st->address));
        st->prefixlen = best->prefixlen;
        st->have_address = true;
    }
    why = link_down_why(l);
    st->link_up = why == NULL;
    if (why)
        snprintf(st->reason, sizeof(st->reason), "link %s is down%s", st->ifname, why);
    else if (!best)
        snprintf(st->reason, sizeof(st->reason), "interface %s has no IPv4 address", st->ifname);
}

/* Is holder a (on link la) a better one than b (on lb) for a literal? */
static bool holder_better(const agent_netaddr *a, const agent_netif *la, const agent_netaddr *b,
                          const agent_netif *lb, int prev_ifindex)
{
    bool up_a = link_down_why(la) == NULL, up_b = link_down_why(lb) == NULL;

    if (up_a != up_b)
        return up_a;
    if (a->secondary != b->secondary)
        return !a->secondary;
    if (prev_ifindex > 0 && (a->ifindex == prev_ifindex) != (b->ifindex == prev_ifindex))
        return a->ifindex == prev_ifindex;
    return a->ifindex < b->ifindex;
}

static void eval_address(const char *want, const agent_netif *links, size_t nlinks,
                         const agent_netaddr *addrs, size_t naddrs, const agent_netstate *prev,
                         agent_netstate *st)
{
    const agent_netaddr *best = NULL;
    const agent_netif *best_link = NULL;
    int prev_ifindex = prev && !prev->by_name ? prev->ifindex : 0;
    struct in_addr a;
    const char *why;

    inet_pton(AF_INET, want, &a);
    inet_ntop(AF_INET, &a, st->address, sizeof(st->address));
    for (size_t i = 0; i < naddrs; i++) {
        const agent_netif *l;

        if (addrs[i].addr.s_addr != a.s_addr)
            continue;
        l = link_by_index(links, nlinks, addrs[i].ifindex);
        if (l && (!best || holder_better(&addrs[i], l, best, best_link, prev_ifindex))) {
            best = &addrs[i];
            best_link = l;
        }
    }
    if (!best) {
        snprintf(st->reason, sizeof(st->reason), "address %s is on no interface", st->address);
        return;
    }
    set_ifname(st, best_link);
    st->prefixlen = best->prefixlen;
    st->have_address = true;
    why = link_down_why(best_link);
    st->link_up = why == NULL;
    if (why)
        snprintf(st->reason, sizeof(st->reason), "link %s is down%s", st->ifname, why);
}

int agent_netstate_eval(const char *want, const agent_netif *links, size_t nlinks,
                        const agent_netaddr *addrs, size_t naddrs, const agent_netstate *prev,
                        agent_netstate *out)
{
    dpr_err err = DPR_ERR_INIT;
    int kind = agent_netstate_classify(want, &err);

    memset(out, 0, sizeof(*out));
    if (kind < 0) {
        snprintf(out->reason, sizeof(out->reason), "%s", err.msg);
        return kind;
    }
    out->by_name = kind == AGENT_NETWANT_INTERFACE;
    if (out->by_name)
        eval_interface(want, links, nlinks, addrs, naddrs, prev, out);
    else
        eval_address(want, links, nlinks, addrs, naddrs, prev, out);
    out->healthy = out->link_up && out->have_address;
    assert(out->healthy == !out->reason[0]); /* a reason exactly when not healthy */
    return 0;
}

unsigned agent_netstate_diff(const agent_netstate *a, const agent_netstate *b)
{
    unsigned d = 0;

    if (strcmp(a->address, b->address) != 0 || a->prefixlen != b->prefixlen ||
        a->have_address != b->have_address)
        d |= AGENT_NETSTATE_ADDRESS;
    if (strcmp(a->ifname, b->ifname) != 0 || a->ifindex != b->ifindex)
        d |= AGENT_NETSTATE_INTERFACE;
    if (a->link_up && !b->link_up)
        d |= AGENT_NETSTATE_LINK_DOWN;
    if (!a->link_up && b->link_up)
        d |= AGENT_NETSTATE_LINK_UP;
    if (a->healthy && !b->healthy)
        d |= AGENT_NETSTATE_UNHEALTHY;
    if (!a->healthy && b->healthy)
        d |= AGENT_NETSTATE_HEALTHY;
    if (strcmp(a->reason, b->reason) != 0 || a->by_name != b->by_name)
        d |= AGENT_NETSTATE_REASON;
    return d;
}
