/*
 * netwatch.c - see netwatch.h. libnl's cache manager keeps a link cache
 * and an address cache up to date from its event socket; this module polls
 * that socket on the loop, evaluates the caches (netstate.c) once a burst
 * has settled, and reads the caches again when the kernel dropped events.
 */
#include "netwatch.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/if_addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include "common/err.h"
#include "common/log.h"

/* The event socket's receive buffer: a reconfiguration of a few thousand
 * addresses fits without an overrun. Without CAP_NET_ADMIN (the shipped
 * unit) the kernel caps it at net.core.rmem_max. */
#define RCVBUF_BYTES (4 << 20)
/* After a failed read of the caches, or a failed poll: the next try. */
#define RETRY_MS 1000
/* Reading what the event socket holds before a resync: at most this many
 * overruns in a row (a flood), then the resync goes on anyway. */
#define DRAIN_TRIES 16

struct agent_netwatch {
    uv_loop_t *loop;
    char *want;
    agent_netwatch_hooks hooks;
    struct nl_sock *sk; /* the cache manager's event socket (ours to free) */
    struct nl_cache_mngr *mngr;
    struct nl_cache *links, *addrs; /* the manager's */
    agent_netstate state;
    uv_poll_t poll;
    uv_timer_t timer;
    bool poll_open, timer_open; /* initialized, not closed yet */
    bool polling;
    bool resync; /* events were lost: read the caches again before evaluating */
    bool stopping;
    bool failing; /* the last read or poll failed (logged once) */
    size_t resyncs;
    /* the tables given to agent_netstate_eval, kept between evaluations */
    agent_netif *ifs;
    size_t ifs_cap;
    agent_netaddr *ads;
    size_t ads_cap;
};

/* A libnl error (-NLE_*) as a negative errno. */
static int nl_to_errno(int nlerr)
{
    switch (nlerr < 0 ? -nlerr : nlerr) {
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_AF_NOSUPPORT:
        return -EAFNOSUPPORT;
    case NLE_PERM:
        return -EPERM;
    case NLE_NOACCESS:
        return -EACCES;
    case NLE_OPNOTSUPP:
        return -EOPNOTSUPP;
    case NLE_PROTO_MISMATCH:
        return -EPROTONOSUPPORT;
    case NLE_AGAIN:
        return -EAGAIN;
    case NLE_INTR:
        return -EINTR;
    case NLE_BAD_SOCK:
        return -EBADF;
    default:
        return -EIO;
    }
}

static void destroy(agent_netwatch *w)
{
    assert(!w->poll_open && !w->timer_open);
    nl_cache_mngr_free(w->mngr); /* and its caches; closes w->sk */
    nl_socket_free(w->sk);
    free(w->ifs);
    free(w->ads);
    free(w->want);
    free(w);
}

/* p (holding *cap elements of size elem) grown to hold need of them, at
 * least one; NULL when out of memory (p is still valid then). */
static void *reserve(void *p, size_t *cap, size_t need, size_t elem)
{
    void *n;

    if (need == 0)
        need = 1;
    if (p && need <= *cap)
        return p;
    n = realloc(p, need * elem);
    if (n)
        *cap = need;
    return n;
}

/* The caches as netstate's tables, evaluated into *st. 0 or -ENOMEM. */
static int evaluate(agent_netwatch *w, const agent_netstate *prev, agent_netstate *st)
{
    size_t nlinks = 0, naddrs = 0;
    struct nl_object *o;
    agent_netif *ifs;
    agent_netaddr *ads;
    int r;

    ifs = reserve(w->ifs, &w->ifs_cap, (size_t)nl_cache_nitems(w->links), sizeof(*ifs));
    if (!ifs)
        return -ENOMEM;
    w->ifs = ifs;
    ads = reserve(w->ads, &w->ads_cap, (size_t)nl_cache_nitems(w->addrs), sizeof(*ads));
    if (!ads)
        return -ENOMEM;
    w->ads = ads;
    for (o = nl_cache_get_first(w->links); o; o = nl_cache_get_next(o)) {
        struct rtnl_link *l = (struct rtnl_link *)o;
        const char *name = rtnl_link_get_name(l);
        agent_netif *f;

        /* a bridge port's AF_BRIDGE record is the same link again */
        if (rtnl_link_get_family(l) != AF_UNSPEC)
            continue;
        assert(nlinks < w->ifs_cap);
        f = &w->ifs[nlinks++];
        memset(f, 0, sizeof(*f));
        f->ifindex = rtnl_link_get_ifindex(l);
        snprintf(f->name, sizeof(f->name), "%.15s", name ? name : "");
        f->flags = rtnl_link_get_flags(l);
        f->operstate = rtnl_link_get_operstate(l);
    }
    for (o = nl_cache_get_first(w->addrs); o; o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct nl_addr *local = rtnl_addr_get_local(a);
        agent_netaddr *f;

        if (rtnl_addr_get_family(a) != AF_INET || !local || nl_addr_get_len(local) != 4)
            continue;
        assert(naddrs < w->ads_cap);
        f = &w->ads[naddrs++];
        memset(f, 0, sizeof(*f));
        f->ifindex = rtnl_addr_get_ifindex(a);
        memcpy(&f->addr, nl_addr_get_binary_addr(local), 4);
        f->prefixlen = (unsigned)rtnl_addr_get_prefixlen(a);
        f->secondary = (rtnl_addr_get_flags(a) & IFA_F_SECONDARY) != 0;
    }
    r = agent_netstate_eval(w->want, w->ifs, nlinks, w->ads, naddrs, prev, st);
    assert(r == 0); /* want was classified at start */
    (void)r;
    return 0;
}

static void log_state(const agent_netwatch *w)
{
    const agent_netstate *st = &w->state;

    if (!st->healthy)
        log_warning("network: node.address %s: %s", w->want, st->reason);
    else if (st->by_name)
        log_info("network: node.address %s: %s/%u, link up", w->want, st->address, st->prefixlen);
    else
        log_info("network: node.address %s: on %s, link up", w->want, st->ifname);
}

/* Reads both caches from scratch, on a socket of its own. What the event
 * socket holds is older than that read (the events before an overrun):
 * applied after it, an address added then (queued) and deleted since
 * (dropped) would come back; so it is read first, into the caches that
 * the new read replaces. What arrives after that is newer than the read,
 * or the same. */
static int resync(agent_netwatch *w, dpr_err *err)
{
    struct nl_sock *sk;
    int nr;

    for (int i = 0; i < DRAIN_TRIES; i++)
        if (nl_cache_mngr_data_ready(w->mngr) >= 0)
            break; /* empty (another overrun while reading: again) */
    sk = nl_socket_alloc();
    if (!sk)
        return dpr_err_set(err, -ENOMEM, "no memory for a netlink socket");
    nr = nl_connect(sk, NETLINK_ROUTE);
    if (nr == 0)
        nr = nl_cache_refill(sk, w->links);
    if (nr == 0)
        nr = nl_cache_refill(sk, w->addrs);
    nl_socket_free(sk);
    if (nr < 0)
        return dpr_err_set(err, nl_to_errno(nr), "%s", nl_geterror(nr));
    return 0;
}

static void on_readable(uv_poll_t *p, int status, int events);

static int start_polling(agent_netwatch *w)
{
    int r = uv_poll_start(&w->poll, UV_READABLE, on_readable);

    w->polling = r == 0;
    return r;
}

static void on_settle(uv_timer_t *t);

/* A failure of the watch itself: logged once until it works again. */
static void retry_later(agent_netwatch *w, const char *what, const char *why)
{
    if (!w->failing)
        log_warning("network: %s: %s; trying again every %d ms", what, why, RETRY_MS);
    w->failing = true;
    uv_timer_start(&w->timer, on_settle, RETRY_MS, 0);
}

static void on_settle(uv_timer_t *t)
{
    agent_netwatch *w = t->data;
    agent_netstate now, before;
    dpr_err err = DPR_ERR_INIT;
    int r;

    if (w->resync) {
        r = resync(w, &err);
        if (r < 0) {
            retry_later(w, "cannot read links and addresses", err.msg);
            return;
        }
        w->resync = false;
        w->resyncs++;
        if (!w->polling && (r = start_polling(w)) < 0) {
            w->resync = true;
            retry_later(w, "cannot poll netlink", uv_strerror(r));
            return;
        }
    }
    if (evaluate(w, &w->state, &now) < 0) {
        retry_later(w, "cannot evaluate links and addresses", strerror(ENOMEM));
        return;
    }
    if (w->failing)
        log_info("network: watching links and addresses again");
    w->failing = false;
    if (agent_netstate_diff(&w->state, &now) == 0)
        return;
    before = w->state;
    w->state = now;
    log_state(w);
    if (w->hooks.changed)
        w->hooks.changed(w->hooks.arg, &before, &w->state);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    agent_netwatch *w = p->data;
    /* also after an error: reading takes the socket's error (ENOBUFS) */
    int nr = nl_cache_mngr_data_ready(w->mngr);

    if (nr < 0 && !w->resync) {
        /* ENOBUFS (libnl says NLE_NOMEM): the kernel dropped events */
        if (nr == -NLE_NOMEM)
            log_notice("network: netlink events were lost (receive buffer overrun); "
                       "reading links and addresses again");
        else
            log_warning("network: reading netlink events failed: %s; reading links and "
                        "addresses again",
                        nl_geterror(nr));
    }
    if (nr < 0)
        w->resync = true;
    if (status < 0) {
        /* libuv stopped polling: a socket error (an overrun) shows as
         * EBADF. Once read, the socket is fine; anything else is retried
         * later, from scratch */
        w->polling = false;
        if (nr != -NLE_NOMEM || start_polling(w) < 0) {
            if (!w->failing)
                log_warning("network: polling netlink failed: %s; trying again every %d ms",
                            uv_strerror(status), RETRY_MS);
            w->failing = true;
            w->resync = true;
            uv_timer_start(&w->timer, on_settle, RETRY_MS, 0);
            return;
        }
    }
    if (!uv_is_active((uv_handle_t *)&w->timer))
        uv_timer_start(&w->timer, on_settle, AGENT_NETWATCH_SETTLE_MS, 0);
}

/* A link went away: so did its addresses (the kernel said so before, but
 * an address left behind would follow a new link that gets its index). */
static void on_link_change(struct nl_cache *cache, struct nl_object *o, int action, void *arg)
{
    agent_netwatch *w = arg;
    struct rtnl_link *l = (struct rtnl_link *)o;
    struct nl_object *a, *next;
    int ifindex;

    if (action != NL_ACT_DEL || rtnl_link_get_family(l) != AF_UNSPEC || !w->addrs)
        return;
    ifindex = rtnl_link_get_ifindex(l);
    for (a = nl_cache_get_first(w->addrs); a; a = next) {
        next = nl_cache_get_next(a);
        if (rtnl_addr_get_ifindex((struct rtnl_addr *)a) == ifindex)
            nl_cache_remove(a);
    }
}

static void on_closed(uv_handle_t *h)
{
    agent_netwatch *w = h->data;

    if (h == (uv_handle_t *)&w->poll)
        w->poll_open = false;
    else
        w->timer_open = false;
    if (!w->poll_open && !w->timer_open)
        destroy(w);
}

void agent_netwatch_stop(agent_netwatch *w)
{
    if (!w || w->stopping)
        return;
    w->stopping = true;
    if (!w->poll_open && !w->timer_open) {
        destroy(w);
        return;
    }
    if (w->poll_open)
        uv_close((uv_handle_t *)&w->poll, on_closed);
    if (w->timer_open)
        uv_close((uv_handle_t *)&w->timer, on_closed);
}

int agent_netwatch_start(uv_loop_t *loop, const char *want, const agent_netwatch_hooks *hooks,
                         agent_netwatch **out, dpr_err *err)
{
    agent_netwatch *w;
    const char *step = "opening a socket", *why;
    int r, nr, fd, size = RCVBUF_BYTES;

    *out = NULL;
    r = agent_netstate_classify(want, err);
    if (r < 0)
        return r;
    w = calloc(1, sizeof(*w));
    if (!w)
        return dpr_err_set(err, -ENOMEM, "cannot watch the network: out of memory");
    w->loop = loop;
    if (hooks)
        w->hooks = *hooks;
    w->want = strdup(want);
    w->sk = nl_socket_alloc();
    nr = w->want && w->sk ? 0 : -NLE_NOMEM;
    if (nr == 0) {
        /* link messages can be larger than libnl's default buffer */
        nl_socket_enable_msg_peek(w->sk);
        nr = nl_cache_mngr_alloc(w->sk, NETLINK_ROUTE, 0, &w->mngr);
    }
    if (nr == 0) {
        fd = nl_cache_mngr_get_fd(w->mngr);
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)); /* best effort */
        step = "reading the links";
        nr = nl_cache_mngr_add(w->mngr, "route/link", on_link_change, w, &w->links);
    }
    if (nr == 0) {
        step = "reading the addresses";
        nr = nl_cache_mngr_add(w->mngr, "route/addr", NULL, NULL, &w->addrs);
    }
    if (nr == 0 && evaluate(w, NULL, &w->state) < 0)
        nr = -NLE_NOMEM;
    if (nr < 0) {
        r = nl_to_errno(nr);
        why = nl_geterror(nr);
        goto fail;
    }

    step = "polling its socket";
    r = uv_poll_init(loop, &w->poll, nl_cache_mngr_get_fd(w->mngr));
    if (r == 0) {
        w->poll.data = w;
        w->poll_open = true;
        uv_timer_init(loop, &w->timer);
        w->timer.data = w;
        w->timer_open = true;
        r = start_polling(w);
    }
    if (r < 0) {
        why = uv_strerror(r);
        goto fail;
    }
    log_state(w);
    *out = w;
    return 0;

fail:
    agent_netwatch_stop(w); /* freed now, or once the loop closed the handles */
    return dpr_err_set(err, r, "cannot watch the network: netlink: %s: %s", step, why);
}

const agent_netstate *agent_netwatch_state(const agent_netwatch *w)
{
    return &w->state;
}

size_t agent_netwatch_resyncs(const agent_netwatch *w)
{
    return w->resyncs;
}
