/*
 * config.h - the agent's configuration file (/etc/dpr/agent.conf, libconfig
 * syntax; conf/agent.conf is the documented example).
 *
 * Every problem is reported with its file and line; unknown settings are
 * errors (a typo must not be ignored).
 */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "problems.h"

#define AGENT_DEFAULT_CONFIG "/etc/dpr/agent.conf"
#define AGENT_IMPL_NAME_MAX 64
#define AGENT_CLUSTER_NAME_MAX 63
#define AGENT_RAFT_ELECTION_MS 500
#define AGENT_RAFT_HEARTBEAT_MS 50
#define AGENT_NODE_DOWN_MS 10000
#define AGENT_RAFT_EXPECT_MAX 5

typedef struct agent_impl {
    char *name;   /* as used in specs: "dpr-kv" */
    char *exec;   /* absolute path of the program */
} agent_impl;

typedef struct agent_config {
    char *path;               /* the file read */
    char *cluster;            /* required */
    char *node_name;          /* default: the host name */
    char *node_address;       /* default 127.0.0.1 */
    char **node_labels;       /* node.labels: what node selectors match (spec.h) */
    size_t nnode_labels;
    uint32_t max_instances;   /* node.max_instances; default: the port range's size */
    char *state_dir;          /* default /var/lib/dpr */
    char *control_socket;     /* default /run/dpr/agent.sock */
    char *control_group;      /* default dpr */
    /* the control API over TCP too (control.listen "HOST:PORT"; NULL: off),
     * and what its callers may do: false read-only (default), true all */
    char *control_listen;
    bool control_remote_full;
    /* the Prometheus endpoint (metrics.address "HOST:PORT"; NULL: off):
     * the agent's dpr_agent_* and its finder's dpr_finder_* metrics */
    char *metrics_address;
    bool metrics_workers;     /* metrics.workers: the finder's per-worker series; default true */
    /* control socket limits (defaults: AGENT_CONTROL_* in control.h) */
    uint32_t control_max_connections;     /* in all; default 256 */
    uint32_t control_max_per_user;        /* of one non-root uid; default 32 */
    uint32_t control_root_reserved;       /* of the total, only for root; default 16 */
    uint32_t control_idle_timeout_ms;     /* default 10000 */
    uint32_t control_max_input_bytes;     /* buffered by all connections; default 16 MiB */
    char *finder_listen;      /* default 127.0.0.1:7000; a wildcard host means node_address */
    /* finder.tls_listen: the finder's TLS port beside the plain one (TLS
     * only, docs/tls.md); default with tls.enabled: finder.listen's host,
     * its port + 1 (0 stays 0); NULL without tls.enabled */
    char *finder_tls_listen;
    char *instance_dir;       /* default /run/dpr/instances */
    char *cs_address;         /* cache-stores listen here; default node address */
    uint16_t port_min, port_max; /* default 7100..7999 */
    /* the instances' metrics endpoints (cachestores.metrics_port_min/max,
     * both or neither; default 0..0: none) */
    uint16_t metrics_port_min, metrics_port_max;
    uint32_t checkpoint_interval_ms; /* spec default, default 100 */
    uint32_t max_clients;     /* spec default, default 10000 */
    size_t nimpls;
    agent_impl *impls;        /* default: dpr-kv = BINDIR/dpr-kv */
    bool verbose;
    /* raft group: absent (raft_address NULL) = a single node without Raft */
    char *raft_address;       /* this node's "IPV4:PORT" */
    char **raft_peers;        /* the other agents' Raft addresses (seed list) */
    size_t nraft_peers;
    uint32_t raft_election_ms;  /* default AGENT_RAFT_ELECTION_MS */
    uint32_t raft_heartbeat_ms; /* default AGENT_RAFT_HEARTBEAT_MS */
    /* the leader marks a member down after this long without contact;
     * default AGENT_NODE_DOWN_MS */
    uint32_t node_down_after_ms;
    bool raft_join;           /* a fresh node joins a running cluster */
    /* a fresh node without peers bootstraps a new cluster once it has found
     * this many fresh agents of its cluster (itself included) by DNS-SD;
     * 0: never (raft.expect) */
    uint32_t raft_expect;
    /* checkpoint replication (a cluster only, replica.h) */
    char *repl_listen;        /* replication.listen; default node.address:7401 */
    char *repl_socket;        /* replication.socket; default beside control.socket */
    /* DNS-SD through avahi (discovery.h): publish this node's records and
     * browse for the agents of its cluster; default true */
    bool discovery;
    /* node.address names an interface (netwatch.h): its name, else NULL.
     * Set by agent_config_resolve_address, which also puts the interface's
     * address into node_address and the settings derived from it. */
    char *node_interface;
    bool cs_address_derived;  /* cachestores.listen_address was not set */
    /* tls: mutual TLS on the links between agents (Raft; docs/tls.md).
     * tls_enabled false (tls.enabled, default false): plain TCP. The files
     * default to /etc/dpr/tls/NODE.crt, NODE.key, ca.crt, ca.crl (crl ""
     * in the file: no revocation list). */
    bool tls_enabled;
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
    char *tls_crl;            /* NULL: none */
    bool repl_listen_derived; /* replication.listen was not set */
} agent_config;

/*
 * Reads and checks path. 0 on success; -EINVAL when the file is invalid
 * (every problem in *probs, where = "FILE:LINE" or "FILE"), -ENOENT/-EACCES
 * etc. when it cannot be read (one problem recorded too), -ENOMEM.
 * *out is only valid on success; free with agent_config_free.
 */
int agent_config_load(const char *path, agent_config *out, agent_problems *probs);
void agent_config_free(agent_config *c);

/*
 * node.address is the interface ifname whose IPv4 address is now addr:
 * node_address becomes addr, and the listeners derived from it
 * (cachestores.listen_address, replication.listen when not set) listen on
 * every address, so that a new address needs no rebinding. 0 or -ENOMEM.
 */
int agent_config_resolve_address(agent_config *c, const char *ifname, const char *addr);
/* The host clients reach this node's cache-stores on: listen_address, or
 * node.address when that listens on every address. */
const char *agent_config_cs_host(const agent_config *c);

/* The program of impl name, or NULL when the config does not know it. */
const char *agent_config_impl_exec(const agent_config *c, const char *name);

#endif
