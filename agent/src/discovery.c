/* discovery.c - DNS-SD through avahi-client (see discovery.h). */
#include "discovery.h"

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "uvavahi.h"

/* How long before a client that failed (no D-Bus) is made again. */
#define RETRY_MS 5000
/* After the daemon went away: long enough for it to have left the bus, so
 * the new client waits for it (NO_FAIL) instead of calling the old one and
 * D-Bus-activating a daemon the operator is stopping. */
#define RECONNECT_MS 1000

/* One service and its entry group. */
typedef struct pub {
    struct agent_discovery *d;
    agent_dnssd_service want;  /* as asked (its name: the key) */
    char name[AGENT_DNSSD_NAME_MAX + 1]; /* as published (renamed after a conflict) */
    AvahiEntryGroup *g;
    agent_dnssd_service done;  /* what the group holds, when have_done */
    bool have_done;
    bool established;
} pub;

/* An agent's record found by browsing, and its resolver (kept: it tells
 * changes of the record too). */
typedef struct found {
    struct agent_discovery *d;
    char name[AGENT_DNSSD_NAME_MAX + 1];
    AvahiIfIndex iface;
    AvahiProtocol proto;
    AvahiServiceResolver *r;
    agent_dnssd_peer peer;
    bool ok;                   /* peer holds an agent of this cluster */
} found;

struct agent_discovery {
    uv_loop_t *loop;
    agent_uvavahi *poll;
    AvahiClient *client;
    AvahiServiceBrowser *browser;
    char cluster[AGENT_DNSSD_NAME_MAX + 1];
    bool browse;
    agent_discovery_hooks hooks;
    pub **pubs;
    size_t npubs;
    found **found;
    size_t nfound;
    agent_dnssd_peer *peers;   /* the found ones that are ok, for callers */
    size_t npeers;
    agent_discovery_state_t state;
    char reason[160];
    uv_timer_t retry;
    bool stopping;
};

static void set_state(agent_discovery *d, agent_discovery_state_t s, const char *reason)
{
    if (d->state == s && strcmp(d->reason, reason) == 0)
        return;
    d->state = s;
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    if (s == AGENT_DISCOVERY_ON)
        log_info("discovery: connected to avahi-daemon, publishing %zu service%s", d->npubs,
                 d->npubs == 1 ? "" : "s");
    else
        log_warning("discovery: %s: %s", agent_discovery_state_name(s), reason);
    if (d->hooks.state)
        d->hooks.state(d->hooks.arg);
}

/* ---- publishing ---------------------------------------------------------------------- */

static AvahiStringList *txt_list(const agent_dnssd_service *s)
{
    AvahiStringList *l = NULL;

    /* avahi prepends: add the last first, so the record keeps the order */
    for (size_t i = s->ntxt; i-- > 0;) {
        AvahiStringList *n = avahi_string_list_add(l, s->txt[i]);
        if (!n) {
            avahi_string_list_free(l);
            return NULL;
        }
        l = n;
    }
    return l;
}

static void sync_pub(pub *p);

static void on_group(AvahiEntryGroup *g, AvahiEntryGroupState state, void *arg)
{
    pub *p = arg;
    char *alt;

    if (p->g != g && p->g)
        return;
    switch (state) {
    case AVAHI_ENTRY_GROUP_ESTABLISHED:
        p->established = true;
        log_debug("discovery: published %s '%s'", p->want.type, p->name);
        break;
    case AVAHI_ENTRY_GROUP_COLLISION:
        alt = avahi_alternative_service_name(p->name);
        if (alt) {
            log_warning("discovery: the name '%s' of %s is taken on the network: publishing "
                        "as '%s'", p->name, p->want.type, alt);
            snprintf(p->name, sizeof(p->name), "%s", alt);
            avahi_free(alt);
        }
        avahi_entry_group_reset(g);
        p->have_done = p->established = false;
        sync_pub(p);
        break;
    case AVAHI_ENTRY_GROUP_FAILURE:
        log_warning("discovery: cannot publish %s '%s': %s", p->want.type, p->name,
                    avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g))));
        avahi_entry_group_reset(g);
        p->have_done = p->established = false;
        break;
    case AVAHI_ENTRY_GROUP_UNCOMMITED:
    case AVAHI_ENTRY_GROUP_REGISTERING:
        break;
    }
}

/* Brings p's group to what is asked. */
static void sync_pub(pub *p)
{
    agent_discovery *d = p->d;
    AvahiStringList *txt;
    int rc;

    if (!d->client || avahi_client_get_state(d->client) != AVAHI_CLIENT_S_RUNNING)
        return;
    if (!p->g && !(p->g = avahi_entry_group_new(d->client, on_group, p))) {
        log_warning("discovery: cannot make an entry group for '%s': %s", p->name,
                    avahi_strerror(avahi_client_errno(d->client)));
        return;
    }
    if (p->have_done && agent_dnssd_same(&p->done, &p->want))
        return;
    txt = txt_list(&p->want);
    if (!txt && p->want.ntxt)
        return; /* out of memory: tried again at the next change */
    if (p->have_done && p->done.port == p->want.port) { /* only the TXT changed */
        rc = avahi_entry_group_update_service_txt_strlst(p->g, AVAHI_IF_UNSPEC,
                                                         AVAHI_PROTO_UNSPEC, 0, p->name,
                                                         p->want.type, NULL, txt);
        if (rc == 0) {
            p->done = p->want;
            avahi_string_list_free(txt);
            return;
        }
    }
    avahi_entry_group_reset(p->g);
    p->have_done = p->established = false;
    rc = avahi_entry_group_add_service_strlst(p->g, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0,
                                              p->name, p->want.type, NULL, NULL, p->want.port,
                                              txt);
    if (rc == AVAHI_ERR_COLLISION) { /* a local name conflict */
        char *alt = avahi_alternative_service_name(p->name);
        if (alt) {
            log_warning("discovery: the name '%s' of %s is taken: publishing as '%s'", p->name,
                        p->want.type, alt);
            snprintf(p->name, sizeof(p->name), "%s", alt);
            avahi_free(alt);
            rc = avahi_entry_group_add_service_strlst(p->g, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                      0, p->name, p->want.type, NULL, NULL,
                                                      p->want.port, txt);
        }
    }
    avahi_string_list_free(txt);
    if (rc == 0)
        rc = avahi_entry_group_commit(p->g);
    if (rc < 0) {
        log_warning("discovery: cannot publish %s '%s': %s", p->want.type, p->name,
                    avahi_strerror(rc));
        avahi_entry_group_reset(p->g);
        return;
    }
    p->done = p->want;
    p->have_done = true;
}

static void sync_all(agent_discovery *d)
{
    for (size_t i = 0; i < d->npubs; i++)
        sync_pub(d->pubs[i]);
}

static void free_pub(pub *p)
{
    if (p->g)
        avahi_entry_group_free(p->g); /* withdraws it */
    free(p);
}

static pub *find_pub(agent_discovery *d, const agent_dnssd_service *s)
{
    for (size_t i = 0; i < d->npubs; i++)
        if (strcmp(d->pubs[i]->want.type, s->type) == 0 &&
            strcmp(d->pubs[i]->want.name, s->name) == 0)
            return d->pubs[i];
    return NULL;
}

int agent_discovery_publish(agent_discovery *d, const agent_dnssd_service *s, size_t n)
{
    pub **next = calloc(n ? n : 1, sizeof(*next));
    size_t made = 0;

    if (!next)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) { /* those asked for: kept or new */
        pub *p = find_pub(d, &s[i]);
        if (!p) {
            if (!(p = calloc(1, sizeof(*p))))
                goto nomem;
            p->d = d;
            snprintf(p->name, sizeof(p->name), "%s", s[i].name);
        }
        p->want = s[i];
        next[made++] = p;
    }
    for (size_t i = 0; i < d->npubs; i++) { /* the others are withdrawn */
        bool kept = false;
        for (size_t j = 0; j < made && !kept; j++)
            kept = next[j] == d->pubs[i];
        if (!kept) {
            log_debug("discovery: withdrawing %s '%s'", d->pubs[i]->want.type,
                      d->pubs[i]->name);
            free_pub(d->pubs[i]);
        }
    }
    free(d->pubs);
    d->pubs = next;
    d->npubs = made;
    sync_all(d);
    return 0;
nomem:
    for (size_t j = 0; j < made; j++)
        if (!find_pub(d, &next[j]->want))
            free(next[j]);
    free(next);
    return -ENOMEM;
}

/* ---- browsing -------------------------------------------------------------------------- */

static void update_peers(agent_discovery *d)
{
    agent_dnssd_peer *v = calloc(d->nfound ? d->nfound : 1, sizeof(*v));
    size_t n = 0;

    if (!v)
        return;
    for (size_t i = 0; i < d->nfound; i++) {
        bool dup = false;
        if (!d->found[i]->ok)
            continue;
        /* one record is found on every interface and protocol */
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(v[j].raft, d->found[i]->peer.raft) == 0;
        if (!dup)
            v[n++] = d->found[i]->peer;
    }
    if (n == d->npeers && (n == 0 || memcmp(v, d->peers, n * sizeof(*v)) == 0)) {
        free(v);
        return;
    }
    free(d->peers);
    d->peers = v;
    d->npeers = n;
    if (d->hooks.peers)
        d->hooks.peers(d->hooks.arg);
}

static void on_resolved(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto,
                        AvahiResolverEvent ev, const char *name, const char *type,
                        const char *domain, const char *host, const AvahiAddress *addr,
                        uint16_t port, AvahiStringList *txt, AvahiLookupResultFlags flags,
                        void *arg)
{
    found *f = arg;
    char *strs[AGENT_DNSSD_TXT_MAX * 2] = { NULL };
    size_t n = 0;
    int rc;

    (void)r, (void)iface, (void)proto, (void)name, (void)type, (void)domain, (void)host;
    (void)addr, (void)port, (void)flags;
    if (ev != AVAHI_RESOLVER_FOUND)
        return; /* (a failure: the record stays as it was known) */
    for (AvahiStringList *l = txt; l && n < sizeof(strs) / sizeof(strs[0]); l = l->next) {
        char *s = malloc(l->size + 1);
        if (!s)
            break;
        memcpy(s, l->text, l->size);
        s[l->size] = '\0';
        strs[n++] = s;
    }
    rc = agent_dnssd_peer_parse(strs, n, f->d->cluster, &f->peer);
    if (rc < 0)
        log_debug("discovery: ignoring the malformed agent record '%s'", f->name);
    f->ok = rc == 1;
    for (size_t i = 0; i < n; i++)
        free(strs[i]);
    update_peers(f->d);
}

static void drop_found(agent_discovery *d, size_t i)
{
    found *f = d->found[i];

    if (f->r)
        avahi_service_resolver_free(f->r);
    free(f);
    d->found[i] = d->found[--d->nfound];
}

static void on_browse(AvahiServiceBrowser *b, AvahiIfIndex iface, AvahiProtocol proto,
                      AvahiBrowserEvent ev, const char *name, const char *type,
                      const char *domain, AvahiLookupResultFlags flags, void *arg)
{
    agent_discovery *d = arg;
    found **grown, *f;

    (void)b, (void)flags;
    switch (ev) {
    case AVAHI_BROWSER_NEW:
        if (strlen(name) > AGENT_DNSSD_NAME_MAX)
            return;
        grown = realloc(d->found, (d->nfound + 1) * sizeof(*grown));
        if (!grown)
            return;
        d->found = grown;
        if (!(f = calloc(1, sizeof(*f))))
            return;
        f->d = d;
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->iface = iface;
        f->proto = proto;
        f->r = avahi_service_resolver_new(d->client, iface, proto, name, type, domain,
                                          AVAHI_PROTO_INET, 0, on_resolved, f);
        if (!f->r) {
            free(f);
            return;
        }
        d->found[d->nfound++] = f;
        break;
    case AVAHI_BROWSER_REMOVE:
        for (size_t i = d->nfound; i-- > 0;)
            if (strcmp(d->found[i]->name, name) == 0 && d->found[i]->iface == iface &&
                d->found[i]->proto == proto)
                drop_found(d, i);
        update_peers(d);
        break;
    case AVAHI_BROWSER_FAILURE:
        log_warning("discovery: browsing %s failed: %s", AGENT_DNSSD_AGENT,
                    avahi_strerror(avahi_client_errno(d->client)));
        break;
    case AVAHI_BROWSER_CACHE_EXHAUSTED:
    case AVAHI_BROWSER_ALL_FOR_NOW:
        break;
    }
}

/* ---- the client -------------------------------------------------------------------------- */

/* The client is gone (freed, or about to be): so are its groups,
 * browser and resolvers. */
static void forget_client(agent_discovery *d)
{
    for (size_t i = 0; i < d->npubs; i++) {
        d->pubs[i]->g = NULL;
        d->pubs[i]->have_done = d->pubs[i]->established = false;
    }
    for (size_t i = 0; i < d->nfound; i++) {
        d->found[i]->r = NULL;
        free(d->found[i]);
    }
    d->nfound = 0;
    d->browser = NULL;
    update_peers(d);
}

static void on_retry(uv_timer_t *t);

static void on_client(AvahiClient *c, AvahiClientState state, void *arg)
{
    agent_discovery *d = arg;

    if (d->stopping)
        return;
    switch (state) {
    case AVAHI_CLIENT_S_RUNNING:
        d->client = c; /* (also during avahi_client_new) */
        if (d->browse && !d->browser) {
            d->browser = avahi_service_browser_new(c, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET,
                                                   AGENT_DNSSD_AGENT, NULL, 0, on_browse, d);
            if (!d->browser)
                log_warning("discovery: cannot browse %s: %s", AGENT_DNSSD_AGENT,
                            avahi_strerror(avahi_client_errno(c)));
        }
        set_state(d, AGENT_DISCOVERY_ON, "");
        sync_all(d);
        break;
    case AVAHI_CLIENT_S_COLLISION:
    case AVAHI_CLIENT_S_REGISTERING:
        /* the host name is being (re)registered: publish again after */
        for (size_t i = 0; i < d->npubs; i++)
            if (d->pubs[i]->g) {
                avahi_entry_group_reset(d->pubs[i]->g);
                d->pubs[i]->have_done = d->pubs[i]->established = false;
            }
        if (state == AVAHI_CLIENT_S_COLLISION)
            set_state(d, AGENT_DISCOVERY_CONNECTING, "the host name is taken on the network; "
                      "avahi-daemon is choosing another");
        break;
    case AVAHI_CLIENT_CONNECTING:
        set_state(d, AGENT_DISCOVERY_CONNECTING, "waiting for avahi-daemon to start");
        break;
    case AVAHI_CLIENT_FAILURE:
        /* the daemon went away (or D-Bus did): a new client waits for it */
        set_state(d, AGENT_DISCOVERY_OFF, avahi_strerror(avahi_client_errno(c)));
        uv_timer_start(&d->retry, on_retry, RECONNECT_MS, 0);
        break;
    }
}

static void new_client(agent_discovery *d)
{
    int error = 0;

    if (d->client) {
        avahi_client_free(d->client);
        d->client = NULL;
        forget_client(d);
    }
    d->client = avahi_client_new(agent_uvavahi_poll(d->poll), AVAHI_CLIENT_NO_FAIL, on_client,
                                 d, &error);
    if (!d->client) {
        char why[160];
        snprintf(why, sizeof(why), "cannot reach avahi-daemon: %s (trying again every %d s)",
                 avahi_strerror(error), RETRY_MS / 1000);
        set_state(d, AGENT_DISCOVERY_OFF, why);
        uv_timer_start(&d->retry, on_retry, RETRY_MS, 0);
    }
}

static void on_retry(uv_timer_t *t)
{
    agent_discovery *d = t->data;

    if (!d->stopping)
        new_client(d);
}

int agent_discovery_start(uv_loop_t *loop, const agent_discovery_config *cfg,
                          const agent_discovery_hooks *hooks, agent_discovery **out)
{
    agent_discovery *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (agent_uvavahi_new(loop, &d->poll) < 0) {
        free(d);
        return -ENOMEM;
    }
    d->loop = loop;
    snprintf(d->cluster, sizeof(d->cluster), "%s", cfg->cluster);
    d->browse = cfg->browse_agents;
    if (hooks)
        d->hooks = *hooks;
    d->state = AGENT_DISCOVERY_CONNECTING;
    snprintf(d->reason, sizeof(d->reason), "connecting to avahi-daemon");
    uv_timer_init(loop, &d->retry);
    d->retry.data = d;
    new_client(d);
    *out = d;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    agent_discovery *d = h->data;

    agent_uvavahi_free(d->poll);
    free(d);
}

void agent_discovery_stop(agent_discovery *d)
{
    if (!d)
        return;
    d->stopping = true;
    for (size_t i = 0; i < d->npubs; i++) {
        d->pubs[i]->g = NULL; /* (freed with the client) */
        free(d->pubs[i]);
    }
    free(d->pubs);
    d->pubs = NULL;
    d->npubs = 0;
    if (d->client)
        avahi_client_free(d->client); /* withdraws what it published */
    d->client = NULL;
    for (size_t i = 0; i < d->nfound; i++)
        free(d->found[i]);
    free(d->found);
    free(d->peers);
    d->found = NULL;
    d->peers = NULL;
    d->nfound = d->npeers = 0;
    uv_close((uv_handle_t *)&d->retry, on_closed);
}

/* ---- asking ---------------------------------------------------------------------------- */

agent_discovery_state_t agent_discovery_state(const agent_discovery *d, const char **reason)
{
    if (reason)
        *reason = d->reason;
    return d->state;
}

const char *agent_discovery_state_name(agent_discovery_state_t s)
{
    switch (s) {
    case AGENT_DISCOVERY_ON:
        return "on";
    case AGENT_DISCOVERY_CONNECTING:
        return "connecting";
    case AGENT_DISCOVERY_OFF:
        break;
    }
    return "off";
}

size_t agent_discovery_published(const agent_discovery *d)
{
    size_t n = 0;

    for (size_t i = 0; i < d->npubs; i++)
        n += d->pubs[i]->established;
    return n;
}

const char *agent_discovery_name(const agent_discovery *d, const char *type, const char *asked)
{
    for (size_t i = 0; i < d->npubs; i++)
        if (strcmp(d->pubs[i]->want.type, type) == 0 &&
            strcmp(d->pubs[i]->want.name, asked) == 0)
            return d->pubs[i]->established ? d->pubs[i]->name : NULL;
    return NULL;
}

size_t agent_discovery_peers(const agent_discovery *d, const agent_dnssd_peer **out)
{
    *out = d->peers;
    return d->npeers;
}
