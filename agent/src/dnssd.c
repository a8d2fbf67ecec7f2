/* dnssd.c - DNS-SD records and decisions, pure (see dnssd.h). */
#include "dnssd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/num.h"

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int agent_dnssd_init(agent_dnssd_service *s, const char *type, const char *who,
                     const char *cluster, uint16_t port)
{
    size_t tail = strlen(cluster) + 1; /* "@cluster" */
    size_t wlen = strlen(who);

    memset(s, 0, sizeof(*s));
    if (tail + 9 + 1 > AGENT_DNSSD_NAME_MAX || strlen(type) >= sizeof(s->type))
        return -EINVAL;
    snprintf(s->type, sizeof(s->type), "%s", type);
    if (wlen + tail <= AGENT_DNSSD_NAME_MAX) {
        snprintf(s->name, sizeof(s->name), "%s@%s", who, cluster);
    } else { /* keep who's start and make it unique with its hash */
        int keep = (int)(AGENT_DNSSD_NAME_MAX - tail - 9);
        snprintf(s->name, sizeof(s->name), "%.*s~%08x@%s", keep, who, fnv1a(who), cluster);
    }
    s->port = port;
    if (agent_dnssd_txt(s, "txtvers", "%s", AGENT_DNSSD_TXTVERS) < 0 ||
        agent_dnssd_txt(s, "cluster", "%s", cluster) < 0)
        return -EINVAL;
    return 0;
}

int agent_dnssd_txt(agent_dnssd_service *s, const char *key, const char *fmt, ...)
{
    char *t;
    size_t klen = strlen(key);
    va_list ap;
    int n;

    if (s->ntxt == AGENT_DNSSD_TXT_MAX)
        return -ENOSPC;
    if (klen + 2 > AGENT_DNSSD_TXT_LEN)
        return -E2BIG;
    t = s->txt[s->ntxt];
    memcpy(t, key, klen);
    t[klen] = '=';
    va_start(ap, fmt);
    n = vsnprintf(t + klen + 1, AGENT_DNSSD_TXT_LEN - klen - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= AGENT_DNSSD_TXT_LEN - klen - 1) {
        t[0] = '\0';
        return -E2BIG;
    }
    s->ntxt++;
    return 0;
}

/* The value of key in "key=value", or NULL. */
static const char *value_of(const char *t, const char *key)
{
    size_t k = strlen(key);

    return strncmp(t, key, k) == 0 && t[k] == '=' ? t + k + 1 : NULL;
}

const char *agent_dnssd_txt_get(const agent_dnssd_service *s, const char *key)
{
    for (size_t i = 0; i < s->ntxt; i++) {
        const char *v = value_of(s->txt[i], key);
        if (v)
            return v;
    }
    return NULL;
}

bool agent_dnssd_same(const agent_dnssd_service *a, const agent_dnssd_service *b)
{
    if (strcmp(a->type, b->type) != 0 || strcmp(a->name, b->name) != 0 || a->port != b->port ||
        a->ntxt != b->ntxt)
        return false;
    for (size_t i = 0; i < a->ntxt; i++)
        if (strcmp(a->txt[i], b->txt[i]) != 0)
            return false;
    return true;
}

/* ---- agents found ------------------------------------------------------------ */

static const char *const state_names[] = {
    [AGENT_DNSSD_UNKNOWN] = "unknown",
    [AGENT_DNSSD_SINGLE] = "single",
    [AGENT_DNSSD_FRESH] = "fresh",
    [AGENT_DNSSD_MEMBER] = "member",
};

agent_dnssd_state agent_dnssd_state_parse(const char *s)
{
    for (int i = AGENT_DNSSD_SINGLE; i <= AGENT_DNSSD_MEMBER; i++)
        if (s && strcmp(s, state_names[i]) == 0)
            return (agent_dnssd_state)i;
    return AGENT_DNSSD_UNKNOWN;
}

const char *agent_dnssd_state_name(agent_dnssd_state s)
{
    return s <= AGENT_DNSSD_MEMBER ? state_names[s] : "unknown";
}

/* "IPV4:PORT" with a port 1..65535 (what Raft addresses are). */
static bool ipv4_port(const char *v)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(v, ':');
    struct in_addr a;
    uint64_t port;

    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(host))
        return false;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    return inet_pton(AF_INET, host, &a) == 1 && dpr_parse_u64_str(colon + 1, 1, 65535, &port) == 0;
}

/* Copies v into dst[cap]: false when it does not fit. */
static bool copy(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);

    if (n >= cap)
        return false;
    memcpy(dst, v, n + 1);
    return true;
}

int agent_dnssd_peer_parse(char *const *txt, size_t n, const char *cluster,
                           agent_dnssd_peer *p)
{
    const char *vers = NULL, *cl = NULL, *node = NULL, *raft = NULL, *finder = NULL;
    const char *state = NULL;

    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        const char *t = txt[i], *v;
        if ((v = value_of(t, "txtvers")))
            vers = v;
        else if ((v = value_of(t, "cluster")))
            cl = v;
        else if ((v = value_of(t, "node")))
            node = v;
        else if ((v = value_of(t, "raft")))
            raft = v;
        else if ((v = value_of(t, "finder")))
            finder = v;
        else if ((v = value_of(t, "state")))
            state = v;
    }
    if (!vers || strcmp(vers, AGENT_DNSSD_TXTVERS) != 0 || !cl || strcmp(cl, cluster) != 0)
        return 0;
    p->state = agent_dnssd_state_parse(state);
    if (!raft || p->state == AGENT_DNSSD_SINGLE)
        return 0;
    if (!node || !*node || !copy(p->node, sizeof(p->node), node) || !ipv4_port(raft) ||
        !copy(p->raft, sizeof(p->raft), raft) ||
        (finder && !copy(p->finder, sizeof(p->finder), finder)))
        return -EINVAL;
    return 1;
}

static int cmp_addr(const void *a, const void *b)
{
    return strcmp(a, b);
}

agent_dnssd_action agent_dnssd_decide(const char *self, unsigned expect,
                                      const agent_dnssd_peer *peers, size_t npeers,
                                      char (*addrs)[AGENT_DNSSD_ADDR_MAX], size_t cap,
                                      size_t *n)
{
    size_t fresh = 0;
    bool self_seen = false;

    *n = 0;
    for (size_t i = 0; i < npeers; i++)
        if (peers[i].state == AGENT_DNSSD_MEMBER && strcmp(peers[i].raft, self) != 0 &&
            *n < cap)
            copy(addrs[(*n)++], AGENT_DNSSD_ADDR_MAX, peers[i].raft);
    if (*n)
        return AGENT_DNSSD_JOIN;
    if (expect == 0)
        return AGENT_DNSSD_WAIT;
    /* the fresh agents' addresses, self included, without repeats */
    for (size_t i = 0; i <= npeers && fresh < cap; i++) {
        const char *a = i == npeers ? self : peers[i].raft;
        bool dup = false;
        if (i < npeers && peers[i].state != AGENT_DNSSD_FRESH)
            continue;
        if (i == npeers && self_seen)
            break;
        for (size_t j = 0; j < fresh && !dup; j++)
            dup = strcmp(addrs[j], a) == 0;
        if (dup)
            continue;
        if (strcmp(a, self) == 0)
            self_seen = true;
        copy(addrs[fresh++], AGENT_DNSSD_ADDR_MAX, a);
    }
    if (fresh < expect)
        return AGENT_DNSSD_WAIT;
    qsort(addrs, fresh, sizeof(*addrs), cmp_addr);
    *n = expect;
    for (size_t i = 0; i < expect; i++)
        if (strcmp(addrs[i], self) == 0)
            return AGENT_DNSSD_BOOTSTRAP;
    *n = 0;
    return AGENT_DNSSD_WAIT;
}
