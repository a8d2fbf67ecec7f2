/*
 * finderhost.h - the DPR finder hosted by the agent: one finder core per
 * DPR domain (dpr/domains.h; each deployment is the domain of its name),
 * served over RESP on the agent's loop (finder/src/server.c), and the
 * address cache-stores are told to reach it on.
 *
 * One node (agent_finder_open): the state in a file store under
 * <state>/finder. A cluster (agent_finder_open_cluster): the state in the
 * agents' Raft log (raftstore.h); the finder is served by the leader's agent
 * only, after a barrier, and stops at once when it loses the leadership
 * (its held replies are dropped: nothing is answered from a stale state);
 * every other agent answers "-NOTLEADER HOST:PORT" (the leader's finder) or
 * "-TRYAGAIN ..." (no leader yet) on the same port.
 */
#ifndef AGENT_FINDERHOST_H
#define AGENT_FINDERHOST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "dpr/domains.h"
#include "dpr/finder.h"
#include "raftnode.h"

typedef struct agent_finder agent_finder;

typedef struct agent_finder_hooks {
    void (*committed)(void *arg);          /* a new durable state was published */
    void (*failed)(void *arg, int err);    /* saving failed: the finder stopped */
    /* a cluster: the agent's own commands on the finder port
     * (finder_server.h's command hook), or NULL */
    int (*command)(void *arg, int argc, char *const *argv, const size_t *argvlen,
                   dpr_buf *out);
    void *arg;
} agent_finder_hooks;

/* The finder's TLS port (agent.conf finder.tls_listen with the tls
 * section's files, docs/tls.md), beside the plain one: node certificates
 * of the cluster may send every command there (finder/src/authz.h). */
typedef struct agent_finder_tls {
    const char *listen;   /* "HOST:PORT"; a wildcard host means advertise_host */
    const char *cert, *key, *ca, *crl; /* crl NULL: none */
    const char *cluster;  /* certificates of another cluster are refused */
} agent_finder_tls;

/* A worker the agent owns and the domain it belongs to (its instance's
 * deployment). */
typedef struct agent_finder_member {
    uint64_t worker;
    const char *domain;
} agent_finder_member;

/*
 * Loads (or creates) the finder state in dir and listens on listen
 * ("HOST:PORT"). A wildcard listen host (*, 0.0.0.0, ::) means
 * advertise_host (node.address): the finder listens there only, and that
 * name is the address given to cache-stores; the address bound is logged.
 * A damaged state is an error (-EBADMSG), never a fresh start.
 *
 * Upgrade from a finder without domains: a state whose domain
 * DPR_DOMAIN_DEFAULT holds workers of members[0..nmembers) of another
 * domain is split before serving (dpr_domains_split: each such domain gets
 * its workers with their world-line, cuts and tokens), logged and saved.
 * A target domain that exists already is left alone (logged as an error:
 * those workers stay in the default domain).
 *
 * tls (NULL: none): the TLS port too (strings copied; the files are read
 * by every server started, and again by agent_finder_reload_tls).
 *
 * 0 or a negative errno with a message in err.
 */
int agent_finder_open(uv_loop_t *loop, const char *dir, const char *listen,
                      const char *advertise_host, const agent_finder_tls *tls,
                      const agent_finder_member *members, size_t nmembers,
                      const agent_finder_hooks *hooks, agent_finder **out, dpr_err *err);
/*
 * A cluster's finder on this node: listens on listen (a wildcard host means
 * advertise_host; the port must not be 0: it is every node's finder port)
 * and redirects until agent_finder_raft_changed finds this node leading.
 * legacy_dir (may be NULL): where this node kept the finder's state as a
 * single node; when this node first leads a cluster whose log has no
 * finder state yet, that state is imported (its first finder entry), so
 * the node's deployments carry on. 0 or a negative errno with a message in
 * err (*out may be set even then: stop and free it).
 */
int agent_finder_open_cluster(uv_loop_t *loop, agent_raft *raft, const char *listen,
                              const char *advertise_host, const agent_finder_tls *tls,
                              const char *legacy_dir, const agent_finder_hooks *hooks,
                              agent_finder **out, dpr_err *err);
/* SIGHUP: the TLS port's files read again for new connections
 * (dpr_server_reload_tls; a failure keeps the old ones, logged). No-op
 * without TLS. */
void agent_finder_reload_tls(agent_finder *af);
/* The node's Raft role changed (raftnode.h's hook): take the finder over
 * (barrier, then serve) or stop serving it. */
void agent_finder_raft_changed(agent_finder *af);
/* "HOST:PORT" this node's finder listens on (finder.listen, a wildcard
 * host replaced by node.address). */
const char *agent_finder_listen(const agent_finder *af);
/* Does this node serve the finder (one node, or the cluster's leader)? */
bool agent_finder_serving(const agent_finder *af);
/* The hosted finder's dpr_finder_* metrics (dpr/finder_stats.h) into out:
 * those of its current server (a new one after a change of leader starts
 * its counters at 0); per_worker: with the dpr_finder_worker_* families
 * (agent.conf metrics.workers). 0 or -ENOMEM. */
int agent_finder_metrics(agent_finder *af, bool per_worker, dpr_buf *out);

/* "HOST:PORT" for cache-stores (the real port when listen asked for 0); in
 * a cluster every member's finder, comma-separated. */
const char *agent_finder_address(agent_finder *af);
/* With a TLS port: "HOST:PORT" of every member's TLS port (a cluster), or
 * this node's (finder.tls_listen, a wildcard host replaced); NULL without
 * TLS. Every node's TLS port is the same (finder.tls_listen's port). */
const char *agent_finder_tls_address(agent_finder *af);
/* Every domain of the finder; on a cluster's follower, the replicated
 * state as committed (read-only), NULL when there is none yet. */
dpr_domains *agent_finder_domains(agent_finder *af);
/* The core of domain name, or NULL when the finder has no such domain. */
dpr_finder *agent_finder_domain(agent_finder *af, const char *name);
/* Forgets worker (retired instance) in domain, presenting its token (NULL:
 * none): 0, or -EAGAIN when this node does not serve the finder (a
 * cluster's follower), -EBUSY while one of its reported checkpoints is not
 * in the cut yet (try again after a commit), -ENOENT when the finder does not know
 * it or the domain (also success for the caller), -EACCES when the finder
 * holds another token for it (someone else registered that id). */
int agent_finder_remove_worker(agent_finder *af, const char *domain, uint64_t worker,
                               const char *token);
/* Graceful stop (handles close on the loop); then agent_finder_free. */
/* An instance moved to another node (placement.h): the worker's record in
 * the finder takes its new incarnation's token, so the old incarnation can
 * neither register nor report any more (fenced). Only where the finder
 * serves (-EAGAIN elsewhere). 1 done, 0 it had that token already,
 * -ENOENT the worker is not registered (nothing to fence), -errno. */
int agent_finder_hand_over(agent_finder *af, const char *domain, uint64_t worker,
                           const char *token);
void agent_finder_stop(agent_finder *af);
void agent_finder_free(agent_finder *af);

#endif
