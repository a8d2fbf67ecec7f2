/*
 * spec.h - the cluster spec of the control API (docs/control-api.md,
 * "The cluster spec"): JSON -> struct with every rule checked and every
 * problem reported with its path, and back to JSON.
 */
#ifndef AGENT_SPEC_H
#define AGENT_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "problems.h"

#define AGENT_DEPLOY_NAME_MAX 32
#define AGENT_SPEC_IMPL_MAX 64
#define AGENT_VERSION_MAX 64
#define AGENT_SHARDS_MAX 1024
#define AGENT_INTERVAL_MIN 10
#define AGENT_INTERVAL_MAX 60000
#define AGENT_MAX_CLIENTS_MIN 1
#define AGENT_MAX_CLIENTS_MAX 100000
#define AGENT_DEFAULT_IMPL "dpr-kv"
#define AGENT_REPLICAS_MAX 2
#define AGENT_REPLICAS_AUTO (-1)
/* maxmemory: 0 (no limit), else 1 MiB to 16 TiB */
#define AGENT_MAXMEMORY_MIN (1ull << 20)
#define AGENT_MAXMEMORY_MAX (1ull << 44)
/* checkpoint_mode: "log" or "full" (dpr-kv's --checkpoint-mode); "" when
 * the spec does not say (dpr-kv's default, log) */
#define AGENT_CHECKPOINT_MODE_MAX 4
/* tls.clients: "required", "optional" or "off" (dpr-kv's --tls-auth-clients
 * yes, optional, no); "" when the spec has no "tls" (required, with the
 * agents' tls.enabled: docs/tls.md, "Deployments over TLS") */
#define AGENT_TLS_CLIENTS_MAX 8

/* A deployment's node selector: where the leader may place its instances. */
#define AGENT_SELECTOR_MAX 16 /* names, and labels */
#define AGENT_LABEL_MAX 63    /* a node name or a label */
typedef struct agent_selector {
    uint8_t nnodes, nlabels;
    char nodes[AGENT_SELECTOR_MAX][AGENT_LABEL_MAX + 1];  /* any of (none: any node) */
    char labels[AGENT_SELECTOR_MAX][AGENT_LABEL_MAX + 1]; /* all of */
} agent_selector;

/* A deployment's "rollout": how a change of its settings rolls through its
 * instances (docs/operations.md, "Roll-outs"). */
#define AGENT_ROLLOUT_SECONDS_MAX 86400
typedef struct agent_rollout_spec {
    bool given;                  /* "rollout" was in the spec (written back only then) */
    uint32_t min_ready_seconds;  /* an updated instance stays ready this long first */
    uint32_t max_unavailable;    /* instances not ready at once, >= 1 (default 1) */
    uint32_t partition;          /* only shards >= partition are updated (default 0) */
    uint32_t progress_deadline_seconds; /* an updated instance not ready by then halts
                                           the roll-out (default 120) */
    bool paused;                 /* no instance is restarted for an update */
    /* how often the roll-out was resumed (`rollout resume` adds one): a
     * node lifts its roll-out's halt when the count it took changes, so a
     * resume reaches every node of a cluster through the spec; an apply
     * that leaves it out keeps the recorded count (agent_spec_keep_resumed) */
    uint32_t resumed;
} agent_rollout_spec;

typedef struct agent_deploy {
    char name[AGENT_DEPLOY_NAME_MAX + 1];
    char impl[AGENT_SPEC_IMPL_MAX + 1];
    char version[AGENT_VERSION_MAX + 1];
    uint32_t shards;
    uint32_t checkpoint_interval_ms;
    uint32_t max_clients;
    uint64_t maxmemory;  /* bytes; 0: no limit */
    char checkpoint_mode[AGENT_CHECKPOINT_MODE_MAX + 1]; /* "", "log", "full" */
    /* "tls": {"clients": ...}: "" (not given), "required", "optional", "off" */
    char tls_clients[AGENT_TLS_CLIENTS_MAX + 1];
    agent_selector selector; /* "node_selector"; empty: every node */
    /* "replicas": the other nodes each instance's checkpoints are copied
     * to before they count as durable (0..AGENT_REPLICAS_MAX);
     * AGENT_REPLICAS_AUTO when not given: 1 in a cluster of two nodes or
     * more, 0 on one node (placement.h) */
    int replicas;
    agent_rollout_spec rollout;
} agent_deploy;

typedef struct agent_spec {
    char *name;          /* the cluster */
    size_t n;
    agent_deploy *d;     /* in the spec's order */
} agent_spec;

/* What a spec is checked against. */
typedef struct agent_spec_rules {
    const char *cluster;            /* NULL: any valid name */
    const char *const *impls;       /* known implementations; NULL: any valid name */
    size_t nimpls;
    uint32_t default_interval_ms;   /* 0: 100 */
    uint32_t default_max_clients;   /* 0: 10000 */
    bool no_tls;                    /* the agents' tls.enabled is false: a deployment's
                                       "tls" is refused (false: any valid one is taken) */
} agent_spec_rules;

/*
 * A memory size as Redis reads maxmemory: digits, optionally followed by a
 * unit, case-insensitive: b (1), k (1000), kb (1024), m (1000^2), mb
 * (1024^2), g (1000^3), gb (1024^3). "512mb" = 536870912. 0 and *out set;
 * -EINVAL for anything else (signs, spaces, fractions, other units);
 * -ERANGE when it does not fit 64 bits.
 */
int agent_memory_parse(const char *s, uint64_t *out);

/*
 * The MemoryMax of an instance's unit, derived from its maxmemory and
 * max_clients (docs/operations.md, "Memory"): 2 x maxmemory (a checkpoint
 * forks; copy-on-write can copy every page of the data while the child
 * writes it out) + maxmemory / 2 (what dpr-kv's count does not see:
 * allocator overhead, fragmentation) + 64 MiB (the process, the page cache of
 * the checkpoint being written) + 32 KiB per allowed client (its read buffer
 * and replies in flight). UINT64_MAX (no limit) when maxmemory is 0.
 */
uint64_t agent_memory_max_of(uint64_t maxmemory, uint32_t max_clients);

/* A node label (agent.conf node.labels, a spec's node_selector.labels):
 * 1 to AGENT_LABEL_MAX characters of a-z 0-9 . _ - =, starting and ending
 * with a letter or digit ("ssd", "zone=a"). */
bool agent_label_valid(const char *s);
/* 1 to max characters of A-Z a-z 0-9 . _ - (a host name or address). */
bool agent_host_chars_ok(const char *s, size_t max);
/* A node name: 1 to AGENT_LABEL_MAX characters of A-Z a-z 0-9 . _ -. */
bool agent_node_name_valid(const char *s);
/* Does the node (name, labels) satisfy sel? */
bool agent_selector_match(const agent_selector *sel, const char *name,
                          const char *const *labels, size_t nlabels);

/* ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and at most max characters. */
bool agent_name_valid(const char *s, size_t max);
/* A checkpoint_mode the spec may give: "log" or "full". */
bool agent_checkpoint_mode_valid(const char *s);
/* A tls.clients the spec may give: "required", "optional" or "off". */
bool agent_tls_clients_valid(const char *s);
/* dpr-kv's --tls-auth-clients for a tls.clients ("" is "required"): "yes",
 * "optional" or "no". */
const char *agent_tls_clients_auth(const char *clients);

/*
 * Parses and checks j. 0 and *out filled; -EINVAL with every problem in
 * *probs (where = path such as "cachestores[0].shards"; "" for the spec
 * itself); -ENOMEM. *out is untouched unless 0 is returned.
 */
int agent_spec_parse(const json_t *j, const agent_spec_rules *rules, agent_spec *out,
                     agent_problems *probs);
/* The spec with defaults filled in (new reference, NULL on ENOMEM). */
json_t *agent_spec_to_json(const agent_spec *s);
json_t *agent_deploy_to_json(const agent_deploy *d);
/* {"min_ready_seconds", "max_unavailable", "partition",
 *  "progress_deadline_seconds", "paused"} (new reference, NULL on ENOMEM). */
json_t *agent_rollout_spec_to_json(const agent_rollout_spec *ro);
/* The highest rollout.resumed. */
#define AGENT_ROLLOUT_RESUMED_MAX 1000000000u
/* next's rollout.resumed of every deployment that cur holds too: at least
 * cur's (a spec applied without the count keeps it; it never goes back, so
 * an older halt is never lifted again by it). cur may be NULL or empty. */
void agent_spec_keep_resumed(agent_spec *next, const agent_spec *cur);
int agent_spec_copy(const agent_spec *src, agent_spec *dst);
void agent_spec_free(agent_spec *s);
/* Index of deployment name, or -1. */
int agent_spec_find(const agent_spec *s, const char *name);

#endif
