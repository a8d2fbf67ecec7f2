/* mdns.c - see mdns.h. */
#include "mdns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/address.h>
#include <avahi-common/error.h>
#include <avahi-common/simple-watch.h>
#include <avahi-common/strlst.h>

#include "common/clock.h"
#include "common/err.h"

#define MAX_TYPES 8

/* An instance announced: on how many interfaces and protocols it is now,
 * and its record (svc: in ctx->found) once resolved. */
typedef struct seen {
    char *type, *name;
    int live;
    dpr_dnsrec_svc *svc;
} seen;

typedef struct ctx {
    AvahiSimplePoll *poll;
    dpr_dnsrec_list found; /* resolved instances */
    seen *seen;
    size_t nseen;
    size_t pending;        /* resolvers running */
    uint64_t last_new_ms;  /* when the last new instance was announced (0: none) */
    int failed;            /* a negative errno once something failed */
    dpr_err err;
} ctx;

static void fail(ctx *x, int code, const char *what, int avahi_error)
{
    if (x->failed)
        return;
    x->failed = dpr_err_set(&x->err, code, "mDNS (domain 'local') through avahi-daemon: %s: %s",
                            what, avahi_strerror(avahi_error));
    avahi_simple_poll_quit(x->poll);
}

static seen *seen_find(ctx *x, const char *type, const char *name)
{
    for (size_t i = 0; i < x->nseen; i++)
        if (strcmp(x->seen[i].type, type) == 0 && strcmp(x->seen[i].name, name) == 0)
            return &x->seen[i];
    return NULL;
}

static void on_resolved(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto,
                        AvahiResolverEvent ev, const char *name, const char *type,
                        const char *domain, const char *host, const AvahiAddress *a,
                        uint16_t port, AvahiStringList *txt, AvahiLookupResultFlags flags,
                        void *ud)
{
    ctx *x = ud;
    seen *s = seen_find(x, type, name);
    int rc = 0;

    x->pending--;
    if (ev == AVAHI_RESOLVER_FOUND && s) {
        if (!s->svc) {
            rc = dpr_dnsrec_svc_new(&x->found, type, name, domain, &s->svc);
            if (rc == 0)
                rc = dpr_dnsrec_set_target(s->svc, host ? host : "", port);
            /* the strings in the record's order (avahi keeps it) */
            for (AvahiStringList *l = txt; rc == 0 && l; l = avahi_string_list_get_next(l))
                rc = dpr_dnsrec_txt_add(s->svc, avahi_string_list_get_text(l),
                                        avahi_string_list_get_size(l));
        }
        if (rc == 0 && a) {
            char text[AVAHI_ADDRESS_STR_MAX];
            avahi_address_snprint(text, sizeof(text), a);
            rc = dpr_dnsrec_add_address(s->svc, text);
        }
        if (rc < 0 && !x->failed)
            x->failed = dpr_err_set(&x->err, -ENOMEM, "out of memory");
        if (s->svc)
            dpr_dnsrec_svc_finish(s->svc);
    }
    /* (a failed resolution leaves the instance out) */
    avahi_service_resolver_free(r);
}

static void on_browse(AvahiServiceBrowser *b, AvahiIfIndex iface, AvahiProtocol proto,
                      AvahiBrowserEvent ev, const char *name, const char *type,
                      const char *domain, AvahiLookupResultFlags flags, void *ud)
{
    ctx *x = ud;
    AvahiClient *client = avahi_service_browser_get_client(b);
    seen *s;

    switch (ev) {
    case AVAHI_BROWSER_NEW:
        s = seen_find(x, type, name);
        if (!s) {
            seen *v = realloc(x->seen, (x->nseen + 1) * sizeof(*v));
            char *t = strdup(type), *n = strdup(name);
            if (v)
                x->seen = v;
            if (!v || !t || !n) {
                free(t);
                free(n);
                if (!x->failed)
                    x->failed = dpr_err_set(&x->err, -ENOMEM, "out of memory");
                avahi_simple_poll_quit(x->poll);
                return;
            }
            s = &x->seen[x->nseen++];
            *s = (seen){.type = t, .name = n};
            x->last_new_ms = dpr_mono_ms();
        }
        s->live++;
        /* each interface and protocol: its address */
        if (avahi_service_resolver_new(client, iface, proto, name, type, domain,
                                       AVAHI_PROTO_UNSPEC, 0, on_resolved, x))
            x->pending++;
        break;
    case AVAHI_BROWSER_REMOVE:
        s = seen_find(x, type, name);
        if (s && s->live > 0)
            s->live--;
        break;
    case AVAHI_BROWSER_FAILURE:
        fail(x, -EIO, "browsing failed", avahi_client_errno(client));
        break;
    case AVAHI_BROWSER_ALL_FOR_NOW:
    case AVAHI_BROWSER_CACHE_EXHAUSTED:
        break;
    }
}

static void on_client(AvahiClient *c, AvahiClientState state, void *ud)
{
    ctx *x = ud;
    if (state == AVAHI_CLIENT_FAILURE)
        fail(x, -ECONNREFUSED, "lost avahi-daemon", avahi_client_errno(c));
}

/* Hands the instances still announced and resolved over to out. */
static int take_results(ctx *x, dpr_dnsrec_list *out)
{
    for (size_t i = 0; i < x->nseen; i++) {
        seen *s = &x->seen[i];
        if (!s->svc || s->live <= 0)
            continue;
        if (dpr_dnsrec_list_add(out, s->svc) < 0)
            return -ENOMEM;
        /* moved from x->found to out */
        for (size_t k = 0; k < x->found.n; k++)
            if (x->found.v[k] == s->svc) {
                memmove(&x->found.v[k], &x->found.v[k + 1],
                        (x->found.n - k - 1) * sizeof(x->found.v[0]));
                x->found.n--;
                break;
            }
        s->svc = NULL;
    }
    return 0;
}

int dpr_mdns_browse(const char *const *types, size_t ntypes, int timeout_ms,
                    dpr_dnsrec_list *out, dpr_err *err)
{
    ctx x;
    AvahiClient *client = NULL;
    uint64_t start = dpr_mono_ms(), deadline = start + (uint64_t)timeout_ms;
    int aerr = 0, r = 0;

    memset(&x, 0, sizeof(x));
    if (ntypes > MAX_TYPES)
        return dpr_err_set(err, -EINVAL, "at most %d service types at once", MAX_TYPES);
    x.poll = avahi_simple_poll_new();
    if (!x.poll)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    client = avahi_client_new(avahi_simple_poll_get(x.poll), 0, on_client, &x, &aerr);
    if (!client) {
        r = dpr_err_set(err, -ECONNREFUSED, "mDNS (domain 'local') needs avahi-daemon: %s (is "
                        "avahi-daemon running on this host, with the D-Bus system bus? "
                        "Without it, use a unicast DNS-SD domain)", avahi_strerror(aerr));
        goto out;
    }
    for (size_t i = 0; i < ntypes; i++)
        if (!avahi_service_browser_new(client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, types[i],
                                       "local", 0, on_browse, &x)) {
            fail(&x, -EIO, "cannot browse", avahi_client_errno(client));
            break;
        }
    while (!x.failed) {
        uint64_t now = dpr_mono_ms(), end = deadline;
        if (x.last_new_ms) {
            uint64_t settled = x.last_new_ms + DPR_MDNS_SETTLE_MS;
            if (settled < start + DPR_MDNS_MIN_MS)
                settled = start + DPR_MDNS_MIN_MS;
            if (settled < end)
                end = settled;
        }
        if (now >= end && (x.pending == 0 || now >= deadline + DPR_MDNS_RESOLVE_MS))
            break;
        uint64_t until = now < end ? end : deadline + DPR_MDNS_RESOLVE_MS;
        if (avahi_simple_poll_iterate(x.poll, (int)(until - now)) != 0)
            break; /* quit (a failure) or a poll error */
    }
    if (x.failed) {
        r = x.failed;
        if (err)
            *err = x.err;
        goto out;
    }
    if (take_results(&x, out) < 0)
        r = dpr_err_set(err, -ENOMEM, "out of memory");
out:
    if (client)
        avahi_client_free(client); /* and its browsers and resolvers */
    avahi_simple_poll_free(x.poll);
    for (size_t i = 0; i < x.nseen; i++) {
        free(x.seen[i].type);
        free(x.seen[i].name);
    }
    free(x.seen);
    dpr_dnsrec_list_free(&x.found);
    return r;
}
