/*
 * discover.h - finding a DPR cluster by DNS-SD, and a client of one of its
 * deployments: libdpr-discover (link -ldpr-discover -ldpr; it needs
 * avahi-client and glibc's libresolv, which libdpr itself does not).
 *
 * Every dpr-agent publishes its cluster's records (docs/discovery.md):
 *
 *     _dpr-agent._tcp   <node>@<cluster>                every agent
 *     _dpr-finder._tcp  finder@<cluster>                the agent serving the finder
 *     _dpr-cs._tcp      <deployment>-<shard>@<cluster>  every running instance
 *
 * each with a TXT record holding txtvers=1 and cluster=<name>. A browse
 * keeps the records of one cluster (or of every cluster) whose txtvers is
 * 1, as python-dpr's dpr.discover does. Two back ends:
 *
 *   - the domain "local" (or NULL): multicast DNS through the host's
 *     avahi-daemon (avahi-client, its AvahiSimplePoll: the call blocks). It
 *     browses for timeout_ms, or, once something answered, until no new
 *     instance arrived for a second, but at least 1.5 s; instances found are
 *     resolved (SRV, TXT, address) meanwhile;
 *   - any other domain: unicast DNS-SD (RFC 6763) with glibc's resolver:
 *     PTR <type>.<domain>, then SRV and TXT of each instance, then A and
 *     AAAA of the SRV target, asking `nameserver` or the system's resolver
 *     (/etc/resolv.conf), all within timeout_ms. An instance without SRV is
 *     left out.
 *
 * Typical use (error checks left out):
 *
 *     #include <dpr/discover.h>
 *
 *     dpr_discover_config dc = {.domain = "dpr.example.com",
 *                               .nameserver = "10.0.0.53"};   // or {0}: mDNS
 *     dpr_client *c;  dpr_err err;
 *     if (dpr_client_discover("demo", "kv", &dc, NULL, &c, &err) < 0)
 *         fprintf(stderr, "%s\n", err.msg);
 *     ... sessions as in dpr/client.h ...
 *
 * Return values: 0 (or what is said) or a negative errno; err (may be NULL)
 * gets a one-line message naming the cluster, the domain and what was seen.
 * Finding nothing is not an error for dpr_discover_browse (0 records).
 */
#ifndef DPR_DISCOVER_H
#define DPR_DISCOVER_H

#include "dpr/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/client.h"
#include "dpr/err.h"

#define DPR_DISCOVER_AGENT "_dpr-agent._tcp"
#define DPR_DISCOVER_FINDER "_dpr-finder._tcp"
#define DPR_DISCOVER_CACHESTORE "_dpr-cs._tcp"
#define DPR_DISCOVER_DEFAULT_TIMEOUT_MS 3000

typedef struct dpr_discover_config {
    const char *domain;     /* NULL or "local": mDNS (avahi-daemon); another
                             * (e.g. "dpr.example.com", a final dot allowed):
                             * unicast DNS-SD */
    const char *nameserver; /* unicast only: "IP", "IP:PORT", "[IPv6]:PORT"
                             * (port 53 by default); NULL: the system's
                             * resolver */
    int timeout_ms;         /* for the whole browse; 0: 3000 */
} dpr_discover_config;

/* One service instance found (read only; owned by its dpr_discovered). */
typedef struct dpr_service {
    const char *type;               /* "_dpr-agent._tcp", ... */
    const char *name;               /* the instance name ("node1@demo"); go
                                     * by the TXT, never by the name */
    const char *domain;             /* where it was found ("local", ...) */
    const char *host;               /* the SRV target, without the final dot */
    uint16_t port;                  /* the SRV port */
    size_t naddresses;
    const char *const *addresses;   /* the target's IPv4/IPv6 addresses (text) */
    size_t ntxt;
    const char *const *txt_keys;    /* lower case, each once */
    const char *const *txt_values;  /* "" for a key without '=' */
} dpr_service;

/* What a browse found. */
typedef struct dpr_discovered dpr_discovered;

/*
 * Browses the service types (DPR_DISCOVER_AGENT, ...; at most 8) at once
 * and keeps the records of `cluster` (NULL: of every cluster) whose
 * txtvers is 1, sorted: agents by node, finders by term (highest first),
 * instances by deployment and shard. *out (free it with
 * dpr_discovered_free) holds them, possibly none.
 *   -EINVAL        a bad argument (a domain that is not a DNS name, a
 *                  nameserver that is not an IP address, a nameserver with
 *                  the domain "local", a bad type)
 *   -ECONNREFUSED  mDNS: avahi-daemon (or the D-Bus system bus) cannot be
 *                  reached
 *   -ETIMEDOUT     unicast: the DNS server did not answer within timeout_ms
 *                  (or nothing listens there: the message says which)
 *   -EREMOTEIO     unicast: the DNS server refused or failed (its RCODE)
 *   -EPROTO        unicast: an answer that does not parse
 *   -ENOMEM
 */
DPR_EXPORT int dpr_discover_browse(const char *const *types, size_t ntypes, const char *cluster,
                                   const dpr_discover_config *cfg, dpr_discovered **out,
                                   dpr_err *err);
/*
 * The _dpr-agent._tcp records of cluster (a browse of that type, with
 * DPR_DISCOVER_CACHESTORE too when with_instances is set). -ENOENT when
 * there is none, the message naming the cluster, where it looked and what
 * was seen instead:
 *
 *   no dpr-agent of cluster 'red' found in domain 'dpr.test' (unicast
 *   DNS-SD, DNS server 127.0.0.1:5300); seen instead: agents of cluster
 *   'blue' (n1); 1 agent record(s) of another TXT format (txtvers not 1),
 *   ignored
 *
 * Errors of dpr_discover_browse otherwise.
 */
DPR_EXPORT int dpr_discover_agents(const char *cluster, bool with_instances,
                                   const dpr_discover_config *cfg, dpr_discovered **out,
                                   dpr_err *err);
DPR_EXPORT size_t dpr_discovered_count(const dpr_discovered *d);
/* Record i (i < count), or NULL. */
DPR_EXPORT const dpr_service *dpr_discovered_get(const dpr_discovered *d, size_t i);
/* NULL is fine. */
DPR_EXPORT void dpr_discovered_free(dpr_discovered *d);

/* The value of TXT key (lower case: "cluster", "finder", ...), or NULL. */
DPR_EXPORT const char *dpr_service_txt(const dpr_service *s, const char *key);
/* The endpoint to use, "HOST:PORT" into buf: an instance's addr=, an
 * agent's or the finder's finder=, else the first address (else the host)
 * with the SRV port. 0, -ENOENT when there is none, -ENAMETOOLONG. */
DPR_EXPORT int dpr_service_endpoint(const dpr_service *s, char *buf, size_t cap);

/*
 * A client of `deployment` of `cluster`, found by DNS-SD: the cluster's
 * agents (their _dpr-agent._tcp records in cfg's domain, for at most its
 * timeout) give their finder= addresses (at most DPR_CLIENT_MAX_FINDERS,
 * in node order) to dpr_client_new as dpr_client_config.agents, with
 * .deployment: any agent tells the shards' endpoints and worker ids, and
 * sessions ask the agents again when a shard moves (dpr/client.h, "Clients
 * of a cluster"). A single agent (TXT state=single: a node running its
 * cluster alone) does not answer for its shards: the deployment's
 * _dpr-cs._tcp records (same browse) give them (addr=, worker=, shard= of
 * shards=), and its finder= is the finder.
 *
 * ccfg (may be NULL) gives the client's other settings (timeouts, depth,
 * domain); its shards, finder(s), agents and deployment must be left
 * empty. Errors: those of dpr_discover_agents (-ENOENT: no agent of the
 * cluster), -EPROTO when the agents' records hold no usable finder=
 * address, -ENOENT / -EHOSTDOWN when a single agent's instance records do
 * not hold every shard (the message says which were found), and those of
 * dpr_client_new.
 */
DPR_EXPORT int dpr_client_discover(const char *cluster, const char *deployment,
                                   const dpr_discover_config *cfg,
                                   const dpr_client_config *ccfg, dpr_client **out,
                                   dpr_err *err);

#endif
