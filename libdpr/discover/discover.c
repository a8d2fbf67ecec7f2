/* discover.c - libdpr-discover's public API (dpr/discover.h): browses
 * through mdns.c or unicast.c, filters and sorts with dnsrec.c, and builds
 * the client with libdpr's dpr_client_new. */
#include "dpr/discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/num.h"
#include "dnsrec.h"
#include "mdns.h"
#include "unicast.h"

#define MAX_TYPES 8
#define DOMAIN_MAX 254
#define HOST_MAX 256

struct dpr_discovered {
    dpr_dnsrec_list all;    /* every record found (owns them) */
    dpr_dnsrec_svc **kept;  /* what the caller sees, sorted */
    size_t nkept;
    char domain[DOMAIN_MAX];
};

/* Browses types as cfg says into d->all (unfiltered). */
static int browse_raw(const char *const *types, size_t ntypes, const dpr_discover_config *cfg,
                      dpr_discovered *d, int *timeout_ms, dpr_err *err)
{
    static const dpr_discover_config defaults;
    int r;

    if (!cfg)
        cfg = &defaults;
    if (!types || ntypes == 0 || ntypes > MAX_TYPES)
        return dpr_err_set(err, -EINVAL, "browse 1 to %d service types at once", MAX_TYPES);
    for (size_t i = 0; i < ntypes; i++)
        if (!dpr_dnsrec_valid_type(types[i]))
            return dpr_err_set(err, -EINVAL, "service type '%.80s': expected _name._tcp or "
                               "_name._udp, e.g. " DPR_DISCOVER_AGENT,
                               types[i] ? types[i] : "");
    if (cfg->timeout_ms < 0)
        return dpr_err_set(err, -EINVAL, "timeout must be >= 0 ms (0: %d)",
                           DPR_DISCOVER_DEFAULT_TIMEOUT_MS);
    *timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DPR_DISCOVER_DEFAULT_TIMEOUT_MS;
    r = dpr_dnsrec_check_domain(cfg->domain ? cfg->domain : "local", d->domain,
                                sizeof(d->domain), err);
    if (r < 0)
        return r;
    if (dpr_dnsrec_is_mdns(d->domain)) {
        if (cfg->nameserver)
            return dpr_err_set(err, -EINVAL, "a nameserver is for unicast DNS-SD; the domain "
                               "'local' is browsed with multicast DNS");
        snprintf(d->domain, sizeof(d->domain), "local");
        return dpr_mdns_browse(types, ntypes, *timeout_ms, &d->all, err);
    }
    return dpr_unicast_browse(types, ntypes, d->domain, cfg->nameserver, *timeout_ms, &d->all,
                              err);
}

/* d->kept: the records of d->all of one of types (all types for NULL) that
 * a client keeps, sorted. */
static int keep(dpr_discovered *d, const char *type, const char *cluster)
{
    free(d->kept);
    d->nkept = 0;
    d->kept = calloc(d->all.n ? d->all.n : 1, sizeof(*d->kept));
    if (!d->kept)
        return -ENOMEM;
    for (size_t i = 0; i < d->all.n; i++)
        if ((!type || strcmp(d->all.v[i]->type, type) == 0) &&
            dpr_dnsrec_keep(d->all.v[i], cluster))
            d->kept[d->nkept++] = d->all.v[i];
    dpr_dnsrec_sort(d->kept, d->nkept);
    return 0;
}

int dpr_discover_browse(const char *const *types, size_t ntypes, const char *cluster,
                        const dpr_discover_config *cfg, dpr_discovered **out, dpr_err *err)
{
    dpr_discovered *d = calloc(1, sizeof(*d));
    int timeout_ms, r;

    *out = NULL;
    if (!d)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    r = browse_raw(types, ntypes, cfg, d, &timeout_ms, err);
    if (r == 0 && keep(d, NULL, cluster) < 0)
        r = dpr_err_set(err, -ENOMEM, "out of memory");
    if (r < 0) {
        dpr_discovered_free(d);
        return r;
    }
    *out = d;
    return 0;
}

int dpr_discover_agents(const char *cluster, bool with_instances,
                        const dpr_discover_config *cfg, dpr_discovered **out, dpr_err *err)
{
    const char *types[2] = {DPR_DISCOVER_AGENT, DPR_DISCOVER_CACHESTORE};
    dpr_discovered *d;
    int timeout_ms, r;

    *out = NULL;
    if (!cluster || !*cluster)
        return dpr_err_set(err, -EINVAL, "cluster: expected the cluster's name");
    if (!(d = calloc(1, sizeof(*d))))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    r = browse_raw(types, with_instances ? 2 : 1, cfg, d, &timeout_ms, err);
    if (r < 0)
        goto fail;
    /* every agent record, for the message */
    if (keep(d, DPR_DISCOVER_AGENT, NULL) < 0)
        goto nomem;
    size_t mine = 0;
    for (size_t i = 0; i < d->nkept; i++)
        mine += dpr_dnsrec_keep(d->kept[i], cluster);
    if (mine == 0) {
        dpr_dnsrec_svc **seen = calloc(d->all.n ? d->all.n : 1, sizeof(*seen));
        size_t n = 0;
        if (!seen)
            goto nomem;
        for (size_t i = 0; i < d->all.n; i++)
            if (strcmp(d->all.v[i]->type, DPR_DISCOVER_AGENT) == 0)
                seen[n++] = d->all.v[i];
        dpr_dnsrec_sort(seen, n);
        dpr_dnsrec_no_agents_message(cluster, d->domain, timeout_ms,
                                     cfg && !dpr_dnsrec_is_mdns(d->domain) ? cfg->nameserver
                                                                           : NULL,
                                     seen, n, err);
        free(seen);
        r = -ENOENT;
        goto fail;
    }
    if (keep(d, NULL, cluster) < 0)
        goto nomem;
    *out = d;
    return 0;
nomem:
    r = dpr_err_set(err, -ENOMEM, "out of memory");
fail:
    dpr_discovered_free(d);
    return r;
}

size_t dpr_discovered_count(const dpr_discovered *d)
{
    return d ? d->nkept : 0;
}

const dpr_service *dpr_discovered_get(const dpr_discovered *d, size_t i)
{
    return d && i < d->nkept ? &d->kept[i]->pub : NULL;
}

void dpr_discovered_free(dpr_discovered *d)
{
    if (!d)
        return;
    dpr_dnsrec_list_free(&d->all);
    free(d->kept);
    free(d);
}

/* The record behind a dpr_service (pub is its first member). */
static const dpr_dnsrec_svc *rec_of(const dpr_service *s)
{
    return (const dpr_dnsrec_svc *)(const void *)s;
}

const char *dpr_service_txt(const dpr_service *s, const char *key)
{
    return dpr_dnsrec_txt_get(rec_of(s), key);
}

int dpr_service_endpoint(const dpr_service *s, char *buf, size_t cap)
{
    return dpr_dnsrec_endpoint(rec_of(s), buf, cap);
}

/* ---- a client ------------------------------------------------------------------------ */

static bool is_type(const dpr_dnsrec_svc *s, const char *type)
{
    return strcmp(s->type, type) == 0;
}

/* The client of a single agent's deployment from its instances' records. */
static int client_from_records(const char *cluster, const char *deployment,
                               const dpr_discovered *d, const dpr_endpoint *finder,
                               dpr_client_config *cfg, dpr_client **out, dpr_err *err)
{
    const dpr_dnsrec_svc **by_shard = NULL;
    dpr_endpoint *eps = NULL;
    char *hosts = NULL, found[120] = "", seen[120] = "";
    size_t flen = 0, slen = 0, nmine = 0;
    uint64_t n = 0;
    int r;

    for (size_t i = 0; i < d->nkept; i++) {
        const dpr_dnsrec_svc *s = d->kept[i];
        const char *dep = dpr_dnsrec_txt_get(s, "deployment"), *shards;
        if (!is_type(s, DPR_DISCOVER_CACHESTORE))
            continue;
        if (!dep || strcmp(dep, deployment) != 0) {
            if (slen < sizeof(seen) && (!dep || !strstr(seen, dep))) {
                int m = snprintf(seen + slen, sizeof(seen) - slen, "%s%s", slen ? ", " : "",
                                 dep ? dep : "?");
                slen += m > 0 ? (size_t)m : 0;
            }
            continue;
        }
        if (nmine++ == 0) {
            shards = dpr_dnsrec_txt_get(s, "shards");
            if (!shards || dpr_parse_u64(shards, strlen(shards), 1, 65536, &n) < 0)
                n = 0;
        }
    }
    if (nmine == 0)
        return dpr_err_set(err, -ENOENT, "cluster '%s': no instance records (" 
                           DPR_DISCOVER_CACHESTORE ") of deployment '%s' (seen: %s); its "
                           "instances publish them once running", cluster, deployment,
                           slen ? seen : "none");
    by_shard = calloc(n ? n : 1, sizeof(*by_shard));
    eps = calloc(n ? n : 1, sizeof(*eps));
    hosts = calloc(n ? n : 1, HOST_MAX);
    if (!by_shard || !eps || !hosts) {
        r = dpr_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < d->nkept; i++) {
        const dpr_dnsrec_svc *s = d->kept[i];
        const char *dep = dpr_dnsrec_txt_get(s, "deployment");
        const char *sh = dpr_dnsrec_txt_get(s, "shard"), *shs = dpr_dnsrec_txt_get(s, "shards");
        uint64_t k, m;
        if (!is_type(s, DPR_DISCOVER_CACHESTORE) || !dep || strcmp(dep, deployment) != 0)
            continue;
        if (flen < sizeof(found)) {
            int w = snprintf(found + flen, sizeof(found) - flen, "%s%s", flen ? ", " : "",
                             sh ? sh : "?");
            flen += w > 0 ? (size_t)w : 0;
        }
        if (!sh || !shs || dpr_parse_u64(sh, strlen(sh), 0, 65535, &k) < 0 ||
            dpr_parse_u64(shs, strlen(shs), 1, 65536, &m) < 0 || m != n || k >= n ||
            by_shard[k])
            continue;
        by_shard[k] = s;
    }
    for (uint64_t k = 0; k < n; k++)
        if (!by_shard[k]) {
            r = dpr_err_set(err, -EHOSTDOWN, "cluster '%s', deployment '%s': instance records "
                            "for shard(s) %s of %llu found; wait until every instance runs",
                            cluster, deployment, found, (unsigned long long)n);
            goto out;
        }
    if (n == 0) {
        r = dpr_err_set(err, -EPROTO, "cluster '%s', deployment '%s': its instance records "
                        "have no valid shards=", cluster, deployment);
        goto out;
    }
    for (uint64_t k = 0; k < n; k++) {
        const char *w = dpr_dnsrec_txt_get(by_shard[k], "worker");
        const char *addr = dpr_dnsrec_txt_get(by_shard[k], "addr");
        /* (dpr_endpoint_parse clears the endpoint first) */
        if (!w || !addr || dpr_endpoint_parse(addr, &eps[k], hosts + k * HOST_MAX, HOST_MAX) < 0 ||
            dpr_parse_u64(w, strlen(w), 0, UINT64_MAX, &eps[k].worker) < 0) {
            r = dpr_err_set(err, -EPROTO, "cluster '%s', deployment '%s': the instance record "
                            "of shard %llu lacks a valid worker= or addr=", cluster,
                            deployment, (unsigned long long)k);
            goto out;
        }
        eps[k].has_worker = true;
    }
    cfg->shards = eps;
    cfg->nshards = n;
    cfg->finder = *finder;
    if (!cfg->domain)
        cfg->domain = deployment;
    r = dpr_client_new(cfg, out, err);
out:
    free(by_shard);
    free(eps);
    free(hosts);
    return r;
}

int dpr_client_discover(const char *cluster, const char *deployment,
                        const dpr_discover_config *cfg, const dpr_client_config *ccfg,
                        dpr_client **out, dpr_err *err)
{
    dpr_client_config c;
    dpr_discovered *d = NULL;
    dpr_endpoint agents[DPR_CLIENT_MAX_FINDERS];
    char hosts[DPR_CLIENT_MAX_FINDERS][HOST_MAX], names[160] = "";
    size_t nagents = 0, nrecs = 0, nlen = 0;
    const dpr_dnsrec_svc *single = NULL;
    int r;

    *out = NULL;
    if (!deployment || !*deployment)
        return dpr_err_set(err, -EINVAL, "deployment: expected the deployment's name");
    if (ccfg)
        c = *ccfg;
    else
        memset(&c, 0, sizeof(c));
    if (c.shards || c.nshards || c.finder.host || c.finders || c.nfinders || c.agents ||
        c.nagents || c.deployment)
        return dpr_err_set(err, -EINVAL, "the client's shards, finders, agents and deployment "
                           "come from discovery: leave them empty in its configuration");
    r = dpr_discover_agents(cluster, true, cfg, &d, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < d->nkept; i++) {
        const dpr_dnsrec_svc *s = d->kept[i];
        char ep[HOST_MAX + 8];
        bool dup = false;
        if (!is_type(s, DPR_DISCOVER_AGENT))
            continue;
        nrecs++;
        single = s;
        if (nlen < sizeof(names)) {
            const char *node = dpr_dnsrec_txt_get(s, "node");
            int m = snprintf(names + nlen, sizeof(names) - nlen, "%s%s", nlen ? ", " : "",
                             node ? node : s->name);
            nlen += m > 0 ? (size_t)m : 0;
        }
        if (nagents == DPR_CLIENT_MAX_FINDERS || dpr_dnsrec_endpoint(s, ep, sizeof(ep)) < 0 ||
            dpr_endpoint_parse(ep, &agents[nagents], hosts[nagents], HOST_MAX) < 0)
            continue;
        for (size_t k = 0; k < nagents; k++)
            dup |= agents[k].port == agents[nagents].port &&
                   strcmp(agents[k].host, agents[nagents].host) == 0;
        if (!dup)
            nagents++;
    }
    if (nagents == 0) {
        r = dpr_err_set(err, -EPROTO, "the dpr-agent records of cluster '%s' (%s) hold no "
                        "usable finder= address", cluster, names);
        goto out;
    }
    if (nrecs == 1 && single && dpr_dnsrec_txt_get(single, "state") &&
        strcmp(dpr_dnsrec_txt_get(single, "state"), "single") == 0) {
        /* a node running its cluster alone answers no DPR.CLUSTER.ENDPOINTS */
        r = client_from_records(cluster, deployment, d, &agents[0], &c, out, err);
        goto out;
    }
    c.agents = agents;
    c.nagents = nagents;
    c.deployment = deployment;
    r = dpr_client_new(&c, out, err);
out:
    dpr_discovered_free(d);
    return r;
}
