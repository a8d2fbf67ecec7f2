/* config.c - see config.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/fs.h"
#include "common/num.h"
#include "control.h"
#include "spec.h"

typedef struct ctx {
    const char *file;
    agent_problems *probs;
} ctx;

static void problem_at(ctx *x, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a problem at setting s: "FILE:LINE" (or "FILE" without s). */
static void problem_at(ctx *x, const config_setting_t *s, const char *fmt, ...)
{
    char where[PATH_MAX + 16];
    int line = s ? (int)config_setting_source_line(s) : 0;
    va_list ap;

    if (line > 0)
        snprintf(where, sizeof(where), "%s:%d", x->file, line);
    else
        snprintf(where, sizeof(where), "%s", x->file);
    va_start(ap, fmt);
    agent_problems_addv(x->probs, where, fmt, ap);
    va_end(ap);
}

/* Reports members of group g whose names are not in allowed[]. */
static void check_members(ctx *x, const config_setting_t *g, const char *prefix,
                          const char *const *allowed)
{
    int n = config_setting_length(g);

    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        bool ok = false;

        for (size_t k = 0; allowed[k] && name; k++)
            if (strcmp(allowed[k], name) == 0)
                ok = true;
        if (!ok)
            problem_at(x, m, "unknown setting '%s%s'", prefix, name ? name : "?");
    }
}

/* A group member that must be a group, or NULL when absent. */
static config_setting_t *get_group(ctx *x, config_setting_t *parent, const char *name)
{
    config_setting_t *s = config_setting_get_member(parent, name);

    if (s && !config_setting_is_group(s)) {
        problem_at(x, s, "'%s' must be a group: %s = { ... };", name, name);
        return NULL;
    }
    return s;
}

/* String setting: *dst = copy (or def when absent). -ENOMEM only. */
static int get_str(ctx *x, config_setting_t *g, const char *label, const char *name,
                   const char *def, bool required, char **dst)
{
    config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
    const char *v = def;

    if (s) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
            problem_at(x, s, "'%s' must be a string (in double quotes)", label);
            v = def;
        } else {
            v = config_setting_get_string(s);
        }
    } else if (required) {
        problem_at(x, g, "'%s' is required", label);
    }
    free(*dst);
    *dst = v ? strdup(v) : NULL;
    return (v && !*dst) ? -ENOMEM : 0;
}

static void get_int(ctx *x, config_setting_t *g, const char *label, const char *name,
                    long long min, long long max, long long *dst)
{
    config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
    long long v;

    if (!s)
        return;
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        problem_at(x, s, "'%s' must be an integer", label);
        return;
    }
    v = config_setting_get_int64(s);
    if (config_setting_type(s) == CONFIG_TYPE_INT)
        v = config_setting_get_int(s);
    if (v < min || v > max) {
        problem_at(x, s, "'%s' is out of range (%lld to %lld)", label, min, max);
        return;
    }
    *dst = v;
}

static void get_bool(ctx *x, config_setting_t *g, const char *label, const char *name,
                     bool *dst)
{
    config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;

    if (!s)
        return;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        problem_at(x, s, "'%s' must be true or false", label);
        return;
    }
    *dst = config_setting_get_bool(s) != 0;
}

static const config_setting_t *member_or(config_setting_t *g, const char *name,
                                         const config_setting_t *fallback)
{
    config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
    return s ? s : fallback;
}

static void check_abs_path(ctx *x, const config_setting_t *s, const char *label,
                           const char *v)
{
    if (v && v[0] != '/')
        problem_at(x, s, "'%s' must be an absolute path (got '%s')", label, v);
}

/* Characters a path may hold when it goes into an environment file. */
static bool plain_path(const char *v)
{
    for (; *v; v++)
        if (*v <= ' ' || *v == '"' || *v == '\'' || *v == '\\' || *v == '$' || *v == 0x7f)
            return false;
    return true;
}

static bool host_name_ok(const char *v)
{
    return agent_host_chars_ok(v, 253);
}

static int add_impl(agent_config *c, const char *name, const char *exec)
{
    agent_impl *v = realloc(c->impls, (c->nimpls + 1) * sizeof(*v));

    if (!v)
        return -ENOMEM;
    c->impls = v;
    v[c->nimpls].name = strdup(name);
    v[c->nimpls].exec = strdup(exec);
    if (!v[c->nimpls].name || !v[c->nimpls].exec) {
        free(v[c->nimpls].name);
        free(v[c->nimpls].exec);
        return -ENOMEM;
    }
    c->nimpls++;
    return 0;
}

/* where `make install` put dpr-kv (agent/build.mk passes BINDIR) */
#ifndef DPR_BINDIR
#define DPR_BINDIR "/usr/local/bin"
#endif

static int read_impls(ctx *x, config_setting_t *cs, agent_config *c)
{
    config_setting_t *g = cs ? get_group(x, cs, "impls") : NULL;
    int n, rc;

    if (!g)
        return add_impl(c, "dpr-kv", DPR_BINDIR "/dpr-kv");
    n = config_setting_length(g);
    if (n == 0)
        problem_at(x, g, "'cachestores.impls' is empty: no cache-store could run");
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        const char *exec;

        if (config_setting_type(m) != CONFIG_TYPE_STRING) {
            problem_at(x, m, "'cachestores.impls.%s' must be a string: the program's "
                       "absolute path", name);
            continue;
        }
        exec = config_setting_get_string(m);
        if (strlen(name) > AGENT_IMPL_NAME_MAX) {
            problem_at(x, m, "implementation name '%s' is longer than %d characters", name,
                       AGENT_IMPL_NAME_MAX);
            continue;
        }
        if (exec[0] != '/' || !plain_path(exec)) {
            problem_at(x, m, "'cachestores.impls.%s' must be an absolute path without "
                       "spaces, quotes, '\\' or '$' (got '%s')", name, exec);
            continue;
        }
        rc = add_impl(c, name, exec);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void check_socket_path(ctx *x, const config_setting_t *s, const char *v)
{
    struct sockaddr_un un;

    check_abs_path(x, s, "control.socket", v);
    if (v && strlen(v) >= sizeof(un.sun_path))
        problem_at(x, s, "'control.socket' is too long (at most %zu bytes): '%s'",
                   sizeof(un.sun_path) - 1, v);
}

/* control.max_connections and the other limits of the control socket. */
static void read_control_limits(ctx *x, config_setting_t *control, agent_config *c)
{
    long long maxc = AGENT_CONTROL_MAX_CONNECTIONS, per_user = AGENT_CONTROL_MAX_PER_USER;
    long long reserved = AGENT_CONTROL_ROOT_RESERVED, idle = AGENT_CONTROL_IDLE_TIMEOUT_MS;
    long long input = AGENT_CONTROL_MAX_INPUT_BYTES;
    size_t before = x->probs->n;

    get_int(x, control, "control.max_connections", "max_connections", 1, 65536, &maxc);
    get_int(x, control, "control.max_connections_per_user", "max_connections_per_user", 1,
            65536, &per_user);
    get_int(x, control, "control.root_reserved_connections", "root_reserved_connections", 0,
            65535, &reserved);
    get_int(x, control, "control.idle_timeout_ms", "idle_timeout_ms", 100, 3600000, &idle);
    get_int(x, control, "control.max_input_bytes", "max_input_bytes",
            AGENT_CONTROL_MIN_INPUT_BYTES, 1024LL * 1024 * 1024, &input);
    if (x->probs->n == before && reserved >= maxc)
        problem_at(x, member_or(control, "root_reserved_connections", control),
                   "'control.root_reserved_connections' (%lld) must be below "
                   "'control.max_connections' (%lld): other users need a slot", reserved,
                   maxc);
    c->control_max_connections = (uint32_t)maxc;
    c->control_max_per_user = (uint32_t)per_user;
    c->control_root_reserved = (uint32_t)reserved;
    c->control_idle_timeout_ms = (uint32_t)idle;
    c->control_max_input_bytes = (uint32_t)input;
}

/* The list setting g.key, or NULL (absent, or not a list: a problem
 * showing example). */
static config_setting_t *get_list(ctx *x, config_setting_t *g, const char *key,
                                  const char *label, const char *example)
{
    config_setting_t *l = g ? config_setting_get_member(g, key) : NULL;

    if (l && !config_setting_is_array(l) && !config_setting_is_list(l)) {
        problem_at(x, l, "'%s' must be a list of strings: %s", label, example);
        return NULL;
    }
    return l;
}

/* Entry i of list l as a string (NULL: not a string); *e the entry. */
static const char *list_str(config_setting_t *l, int i, config_setting_t **e)
{
    *e = config_setting_get_elem(l, (unsigned)i);
    return config_setting_type(*e) == CONFIG_TYPE_STRING ? config_setting_get_string(*e) : NULL;
}

/* Appends a copy of s to v[n]: 0 or -ENOMEM. */
static int push_str(char ***v, size_t *n, const char *s)
{
    char **grown = realloc(*v, (*n + 1) * sizeof(*grown));

    if (!grown)
        return -ENOMEM;
    *v = grown;
    if (!(grown[*n] = strdup(s)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* node.labels: a list of labels (spec.h, agent_label_valid). */
static int read_labels(ctx *x, config_setting_t *node, agent_config *c)
{
    config_setting_t *l = get_list(x, node, "labels", "node.labels",
                                   "labels = [\"ssd\", \"zone=a\"];"), *e;

    for (int i = 0; l && i < config_setting_length(l); i++) {
        const char *v = list_str(l, i, &e);
        if (!v || !agent_label_valid(v)) {
            problem_at(x, e, "'node.labels' entry %d must be a label: 1 to %d characters of "
                       "a-z 0-9 . _ - =, starting and ending with a letter or digit", i + 1,
                       AGENT_LABEL_MAX);
            continue;
        }
        if (c->nnode_labels == AGENT_SELECTOR_MAX) {
            problem_at(x, e, "'node.labels' has more than %d entries", AGENT_SELECTOR_MAX);
            break;
        }
        if (push_str(&c->node_labels, &c->nnode_labels, v) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The replication group: where copies of checkpoints arrive from other
 * nodes, and the socket this node's cache-stores ask on (replica.h). */
static int read_replication(ctx *x, config_setting_t *repl, agent_config *c)
{
    char def[300], dir[4096];
    dpr_hostport hp;
    dpr_err err = DPR_ERR_INIT;

    snprintf(def, sizeof(def), "%s:7401", c->node_address ? c->node_address : "127.0.0.1");
    c->repl_listen_derived = !repl || !config_setting_get_member(repl, "listen");
    if (get_str(x, repl, "replication.listen", "listen", def, false, &c->repl_listen) < 0)
        return -ENOMEM;
    if (c->control_socket && dpr_dirname(c->control_socket, dir, sizeof(dir)) == 0)
        snprintf(def, sizeof(def), "%.280s/replica.sock", dir);
    else
        snprintf(def, sizeof(def), "/run/dpr/replica.sock");
    if (get_str(x, repl, "replication.socket", "socket", def, false, &c->repl_socket) < 0)
        return -ENOMEM;
    if (c->repl_listen && dpr_hostport_parse(c->repl_listen, DPR_HOSTPORT_PORT0, &hp, &err) < 0)
        problem_at(x, member_or(repl, "listen", repl), "'replication.listen': %s", err.msg);
    if (c->repl_socket && c->repl_socket[0] != '/')
        problem_at(x, member_or(repl, "socket", repl), "'replication.socket' must be an "
                   "absolute path (got '%s')", c->repl_socket);
    return 0;
}

/* The tls group: the node's certificate, key, the cluster's CA and CRL. */
static int read_tls(ctx *x, config_setting_t *tls, agent_config *c)
{
    static const char *const what[] = { "cert", "key", "ca", "crl" };
    char **dst[] = { &c->tls_cert, &c->tls_key, &c->tls_ca, &c->tls_crl };
    char def[4][320];

    snprintf(def[0], sizeof(def[0]), "/etc/dpr/tls/%.255s.crt", c->node_name ? c->node_name : "node");
    snprintf(def[1], sizeof(def[1]), "/etc/dpr/tls/%.255s.key", c->node_name ? c->node_name : "node");
    snprintf(def[2], sizeof(def[2]), "/etc/dpr/tls/ca.crt");
    snprintf(def[3], sizeof(def[3]), "/etc/dpr/tls/ca.crl");
    get_bool(x, tls, "tls.enabled", "enabled", &c->tls_enabled);
    for (size_t i = 0; i < 4; i++) {
        char label[16];

        snprintf(label, sizeof(label), "tls.%s", what[i]);
        if (get_str(x, tls, label, what[i], def[i], false, dst[i]) < 0)
            return -ENOMEM;
        if ((*dst[i])[0] == '\0' && i == 3) {
            free(*dst[i]);
            *dst[i] = NULL;
        } else if ((*dst[i])[0] != '/') {
            problem_at(x, member_or(tls, what[i], tls), "'%s' must be an absolute path "
                       "(got '%s')", label, *dst[i]);
        }
    }
    return 0;
}

/* A Raft address: "IPV4:PORT" (what c-raft's TCP transport takes). */
static bool raft_address_ok(const char *v)
{
    char host[INET_ADDRSTRLEN];
    struct in_addr a;
    const char *colon = strrchr(v, ':');
    char *end;
    unsigned long port;

    if (!colon || (size_t)(colon - v) >= sizeof(host))
        return false;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    errno = 0;
    port = strtoul(colon + 1, &end, 10);
    return inet_pton(AF_INET, host, &a) == 1 && colon[1] >= '0' && colon[1] <= '9' && !*end &&
           errno == 0 && port >= 1 && port <= 65535;
}

/* The raft group: this node's Raft address and its peers (the seed list). */
static int read_raft(ctx *x, config_setting_t *raft, agent_config *c)
{
    static const char *const keys[] = { "address", "peers", "election_timeout_ms",
                                        "heartbeat_timeout_ms", "join", "node_down_after_ms",
                                        "expect", NULL };
    config_setting_t *peers;
    long long election = AGENT_RAFT_ELECTION_MS, heartbeat = AGENT_RAFT_HEARTBEAT_MS;
    long long down = AGENT_NODE_DOWN_MS, expect = 0;
    size_t before = x->probs->n;

    check_members(x, raft, "raft.", keys);
    if (get_str(x, raft, "raft.address", "address", NULL, true, &c->raft_address) < 0)
        return -ENOMEM;
    if (c->raft_address && !raft_address_ok(c->raft_address))
        problem_at(x, member_or(raft, "address", raft), "'raft.address' must be IPV4:PORT "
                   "(got '%s')", c->raft_address);
    peers = get_list(x, raft, "peers", "raft.peers", "peers = [\"10.0.0.2:7400\", ...];");
    for (int i = 0; peers && i < config_setting_length(peers); i++) {
        config_setting_t *e;
        const char *v = list_str(peers, i, &e);
        if (!v || !raft_address_ok(v)) {
            problem_at(x, e, "'raft.peers' entry %d must be \"IPV4:PORT\"", i + 1);
            continue;
        }
        if (c->raft_address && strcmp(v, c->raft_address) == 0)
            continue; /* the same list on every node may name this one too */
        for (size_t j = 0; j < c->nraft_peers; j++)
            if (strcmp(c->raft_peers[j], v) == 0)
                problem_at(x, e, "'raft.peers' names %s twice", v);
        if (push_str(&c->raft_peers, &c->nraft_peers, v) < 0)
            return -ENOMEM;
    }
    get_int(x, raft, "raft.election_timeout_ms", "election_timeout_ms", 50, 60000, &election);
    get_int(x, raft, "raft.heartbeat_timeout_ms", "heartbeat_timeout_ms", 10, 30000, &heartbeat);
    if (x->probs->n == before && heartbeat * 2 > election)
        problem_at(x, member_or(raft, "heartbeat_timeout_ms", raft), "'raft.heartbeat_timeout_ms' "
                   "must be at most half of 'raft.election_timeout_ms'");
    get_bool(x, raft, "raft.join", "join", &c->raft_join);
    if (c->raft_join && c->nraft_peers == 0 && !c->discovery)
        problem_at(x, member_or(raft, "join", raft), "'raft.join' needs 'raft.peers' (the "
                   "agents to ask: any members of the running cluster) or discovery on");
    get_int(x, raft, "raft.expect", "expect", 1, AGENT_RAFT_EXPECT_MAX, &expect);
    c->raft_expect = (uint32_t)expect;
    if (expect && c->nraft_peers)
        problem_at(x, member_or(raft, "expect", raft), "'raft.expect' is for a cluster "
                   "without a seed list: remove 'raft.peers' or 'raft.expect'");
    else if (expect && c->raft_join)
        problem_at(x, member_or(raft, "expect", raft), "'raft.expect' bootstraps a new "
                   "cluster, 'raft.join' joins a running one: set one of them");
    else if (expect && !c->discovery)
        problem_at(x, member_or(raft, "expect", raft), "'raft.expect' finds the other agents "
                   "by DNS-SD: it needs 'discovery.enabled'");
    get_int(x, raft, "raft.node_down_after_ms", "node_down_after_ms", 1000, 86400000, &down);
    if (x->probs->n == before && down <= 2 * election)
        problem_at(x, member_or(raft, "node_down_after_ms", raft), "'raft.node_down_after_ms' "
                   "must be above twice 'raft.election_timeout_ms'");
    c->raft_election_ms = (uint32_t)election;
    c->raft_heartbeat_ms = (uint32_t)heartbeat;
    c->node_down_after_ms = (uint32_t)down;
    return 0;
}

/* A listener's "HOST:PORT" (NULL: not set) at g.name, labelled label. */
static void check_listen(ctx *x, config_setting_t *g, const char *label, const char *name,
                         const char *v)
{
    struct sockaddr_storage ss;
    dpr_hostport hp;
    dpr_err err = DPR_ERR_INIT;

    if (v && (dpr_hostport_parse(v, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, &err) < 0 ||
              dpr_hostport_resolve(&hp, true, &ss, NULL, &err) < 0))
        problem_at(x, member_or(g, name, g), "'%s': %s", label, err.msg);
}

/* finder.NAME (listen or tls_listen): an address to bind, with a port in a
 * cluster (every node's finder has the same ports). 0 and *hp, or -EINVAL
 * (a problem recorded) or 1 (v NULL). */
static int check_finder_port(ctx *x, config_setting_t *finder, const char *name,
                             const char *v, bool cluster, dpr_hostport *hp)
{
    struct sockaddr_storage ss;
    dpr_err err = DPR_ERR_INIT;

    if (!v)
        return 1;
    if (dpr_hostport_parse(v, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, hp, &err) < 0 ||
        dpr_hostport_resolve(hp, true, &ss, NULL, &err) < 0) {
        problem_at(x, member_or(finder, name, finder), "'finder.%s': %s", name, err.msg);
        return -EINVAL;
    }
    if (cluster && hp->port == 0) {
        problem_at(x, member_or(finder, name, finder), "'finder.%s' needs a port (not 0) in "
                   "a cluster: the other agents send cache-stores and requests to it", name);
        return -EINVAL;
    }
    return 0;
}

static int read_all(ctx *x, config_setting_t *root, agent_config *c)
{
    static const char *const top[] = { "cluster", "node", "state_directory", "control",
                                       "finder", "cachestores", "log", "raft", "replication",
                                       "discovery", "tls", "metrics", NULL };
    static const char *const disc_keys[] = { "enabled", NULL };
    static const char *const tls_keys[] = { "enabled", "cert", "key", "ca", "crl", NULL };
    static const char *const repl_keys[] = { "listen", "socket", NULL };
    static const char *const node_keys[] = { "name", "address", "labels", "max_instances",
                                             NULL };
    static const char *const control_keys[] = { "socket", "group", "max_connections",
                                                "max_connections_per_user",
                                                "root_reserved_connections", "idle_timeout_ms",
                                                "max_input_bytes", "listen", "remote_access",
                                                NULL };
    static const char *const finder_keys[] = { "listen", "tls_listen", NULL };
    static const char *const metrics_keys[] = { "address", "workers", NULL };
    static const char *const cs_keys[] = { "instance_directory", "listen_address",
                                           "port_min", "port_max", "metrics_port_min",
                                           "metrics_port_max", "checkpoint_interval_ms",
                                           "max_clients", "impls", NULL };
    static const char *const log_keys[] = { "verbose", NULL };
    config_setting_t *node, *control, *finder, *cs, *log, *raft, *repl, *disc, *tls, *metrics;
    char *remote = NULL;
    dpr_hostport hp;
    char host[256] = "localhost";
    long long pmin = 7100, pmax = 7999, interval = 100, maxc = 10000, maxinst = 0;
    long long mmin = 0, mmax = 0;
    size_t before;
    bool ports_ok;
    int rc = 0;

    check_members(x, root, "", top);
    node = get_group(x, root, "node");
    control = get_group(x, root, "control");
    finder = get_group(x, root, "finder");
    cs = get_group(x, root, "cachestores");
    log = get_group(x, root, "log");
    raft = get_group(x, root, "raft");
    repl = get_group(x, root, "replication");
    disc = get_group(x, root, "discovery");
    tls = get_group(x, root, "tls");
    metrics = get_group(x, root, "metrics");
    if (metrics)
        check_members(x, metrics, "metrics.", metrics_keys);
    if (tls)
        check_members(x, tls, "tls.", tls_keys);
    if (disc)
        check_members(x, disc, "discovery.", disc_keys);
    if (repl)
        check_members(x, repl, "replication.", repl_keys);
    if (node)
        check_members(x, node, "node.", node_keys);
    if (control)
        check_members(x, control, "control.", control_keys);
    if (finder)
        check_members(x, finder, "finder.", finder_keys);
    if (cs)
        check_members(x, cs, "cachestores.", cs_keys);
    if (log)
        check_members(x, log, "log.", log_keys);

    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    rc |= get_str(x, root, "cluster", "cluster", NULL, true, &c->cluster);
    rc |= get_str(x, node, "node.name", "name", host, false, &c->node_name);
    rc |= get_str(x, node, "node.address", "address", "127.0.0.1", false, &c->node_address);
    rc |= get_str(x, root, "state_directory", "state_directory", "/var/lib/dpr", false,
                  &c->state_dir);
    rc |= get_str(x, control, "control.socket", "socket", "/run/dpr/agent.sock", false,
                  &c->control_socket);
    rc |= get_str(x, control, "control.group", "group", "dpr", false, &c->control_group);
    rc |= get_str(x, control, "control.listen", "listen", NULL, false, &c->control_listen);
    rc |= get_str(x, control, "control.remote_access", "remote_access", "read-only", false,
                  &remote);
    rc |= get_str(x, finder, "finder.listen", "listen", "127.0.0.1:7000", false,
                  &c->finder_listen);
    rc |= get_str(x, finder, "finder.tls_listen", "tls_listen", NULL, false,
                  &c->finder_tls_listen);
    rc |= get_str(x, metrics, "metrics.address", "address", NULL, false, &c->metrics_address);
    rc |= get_str(x, cs, "cachestores.instance_directory", "instance_directory",
                  "/run/dpr/instances", false, &c->instance_dir);
    rc |= get_str(x, cs, "cachestores.listen_address", "listen_address", NULL, false,
                  &c->cs_address);
    if (rc) {
        free(remote);
        return -ENOMEM;
    }
    if (strcmp(remote, "full") == 0)
        c->control_remote_full = true;
    else if (strcmp(remote, "read-only") != 0)
        problem_at(x, member_or(control, "remote_access", control), "'control.remote_access' "
                   "must be \"read-only\" or \"full\" (got '%s')", remote);
    free(remote);
    c->cs_address_derived = !c->cs_address;
    if (!c->cs_address && c->node_address && !(c->cs_address = strdup(c->node_address)))
        return -ENOMEM;
    before = x->probs->n;
    get_int(x, cs, "cachestores.port_min", "port_min", 1, 65535, &pmin);
    get_int(x, cs, "cachestores.port_max", "port_max", 1, 65535, &pmax);
    ports_ok = x->probs->n == before;
    before = x->probs->n;
    get_int(x, cs, "cachestores.metrics_port_min", "metrics_port_min", 1, 65535, &mmin);
    get_int(x, cs, "cachestores.metrics_port_max", "metrics_port_max", 1, 65535, &mmax);
    if (x->probs->n == before && (!mmin != !mmax))
        problem_at(x, member_or(cs, mmin ? "metrics_port_min" : "metrics_port_max", cs),
                   "'cachestores.metrics_port_min' and 'metrics_port_max' go together (the "
                   "range the instances' metrics ports come from)");
    else if (x->probs->n == before && mmin > mmax)
        problem_at(x, member_or(cs, "metrics_port_min", cs), "'cachestores.metrics_port_min' "
                   "is above 'cachestores.metrics_port_max'");
    c->metrics_port_min = (uint16_t)mmin;
    c->metrics_port_max = (uint16_t)mmax;
    get_int(x, cs, "cachestores.checkpoint_interval_ms", "checkpoint_interval_ms",
            AGENT_INTERVAL_MIN, AGENT_INTERVAL_MAX, &interval);
    get_int(x, cs, "cachestores.max_clients", "max_clients", AGENT_MAX_CLIENTS_MIN,
            AGENT_MAX_CLIENTS_MAX, &maxc);
    get_int(x, node, "node.max_instances", "max_instances", 1, 65535, &maxinst);
    get_bool(x, log, "log.verbose", "verbose", &c->verbose);
    c->metrics_workers = true;
    get_bool(x, metrics, "metrics.workers", "workers", &c->metrics_workers);
    c->discovery = true;
    get_bool(x, disc, "discovery.enabled", "enabled", &c->discovery);
    read_control_limits(x, control, c);
    if (node && read_labels(x, node, c) < 0)
        return -ENOMEM;
    if (raft) {
        rc = read_raft(x, raft, c);
        if (rc < 0)
            return rc;
    }
    rc = read_replication(x, repl, c);
    if (rc < 0)
        return rc;
    rc = read_tls(x, tls, c);
    if (rc < 0)
        return rc;
    c->port_min = (uint16_t)pmin;
    c->port_max = (uint16_t)pmax;
    c->max_instances = maxinst ? (uint32_t)maxinst
                               : pmax >= pmin ? (uint32_t)(pmax - pmin + 1) : 0;
    c->checkpoint_interval_ms = (uint32_t)interval;
    c->max_clients = (uint32_t)maxc;
    if (ports_ok && pmin > pmax)
        problem_at(x, member_or(cs, "port_min", cs), "'cachestores.port_min' is above "
                   "'cachestores.port_max'");
    rc = read_impls(x, cs, c);
    if (rc < 0)
        return rc;

    if (c->cluster && !agent_name_valid(c->cluster, AGENT_CLUSTER_NAME_MAX))
        problem_at(x, member_or(root, "cluster", root), "'cluster' must match "
                   "^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 63 characters (got '%s')",
                   c->cluster);
    if (c->node_name && !agent_node_name_valid(c->node_name))
        problem_at(x, member_or(node, "name", node), "'node.name' must be a host name "
                   "(letters, digits, '-', '.', '_', at most 63; got '%s')", c->node_name);
    if (c->node_address && !host_name_ok(c->node_address) && !strchr(c->node_address, ':'))
        problem_at(x, member_or(node, "address", node), "'node.address' must be an address "
                   "or host name (got '%s')", c->node_address);
    if (c->cs_address && !host_name_ok(c->cs_address) && !strchr(c->cs_address, ':'))
        problem_at(x, member_or(cs, "listen_address", cs), "'cachestores.listen_address' "
                   "must be an address or host name (got '%s')", c->cs_address);
    check_abs_path(x, member_or(root, "state_directory", root), "state_directory",
                   c->state_dir);
    check_abs_path(x, member_or(cs, "instance_directory", cs), "cachestores.instance_directory",
                   c->instance_dir);
    check_socket_path(x, member_or(control, "socket", control), c->control_socket);
    if (c->control_group && !*c->control_group)
        problem_at(x, member_or(control, "group", control), "'control.group' must not be "
                   "empty");
    check_listen(x, control, "control.listen", "listen", c->control_listen);
    check_listen(x, metrics, "metrics.address", "address", c->metrics_address);
    if (check_finder_port(x, finder, "listen", c->finder_listen, c->raft_address != NULL,
                          &hp) == 0 && c->tls_enabled && !c->finder_tls_listen) {
        /* the TLS port's default: finder.listen's host, the next port */
        char def[DPR_HOST_MAX + 16];

        if (hp.port == UINT16_MAX)
            problem_at(x, member_or(finder, "listen", finder), "'finder.listen' has port "
                       "65535: set 'finder.tls_listen' (its default is the next port)");
        snprintf(def, sizeof(def), strchr(hp.host, ':') ? "[%s]:%u" : "%s:%u",
                 hp.host[0] ? hp.host : "*", hp.port ? hp.port + 1u : 0u);
        if (!(c->finder_tls_listen = strdup(def)))
            return -ENOMEM;
    } else if (c->finder_tls_listen && !c->tls_enabled) {
        problem_at(x, member_or(finder, "tls_listen", finder), "'finder.tls_listen' needs "
                   "'tls.enabled = true' (the certificates of the tls section)");
    } else if (c->finder_tls_listen &&
               check_finder_port(x, finder, "tls_listen", c->finder_tls_listen,
                                 c->raft_address != NULL, &hp) == 0 &&
               c->finder_listen && strcmp(c->finder_tls_listen, c->finder_listen) == 0) {
        problem_at(x, member_or(finder, "tls_listen", finder), "'finder.tls_listen' is "
                   "'finder.listen' (%s): the TLS port needs a port of its own",
                   c->finder_listen);
    }
    return 0;
}

/* The LINE of "FILE:LINE", 0 for "FILE". */
static uint64_t where_line(const char *where)
{
    const char *colon = strrchr(where, ':');
    uint64_t line;

    return colon && dpr_parse_u64_str(colon + 1, 1, INT_MAX, &line) == 0 ? line : 0;
}

static int cmp_problem(const void *a, const void *b)
{
    uint64_t la = where_line(((const agent_problem *)a)->where);
    uint64_t lb = where_line(((const agent_problem *)b)->where);

    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(((const agent_problem *)a)->message, ((const agent_problem *)b)->message);
}

int agent_config_load(const char *path, agent_config *out, agent_problems *probs)
{
    ctx x = { path, probs };
    config_t cfg;
    FILE *f;
    size_t before = probs->n;
    int rc;

    memset(out, 0, sizeof(*out));
    f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        agent_problems_add(probs, path, "cannot read the file: %s", strerror(-rc));
        return rc;
    }
    config_init(&cfg);
    if (config_read(&cfg, f) != CONFIG_TRUE) {
        char where[PATH_MAX + 16];

        snprintf(where, sizeof(where), "%s:%d", path, config_error_line(&cfg));
        agent_problems_add(probs, where, "%s", config_error_text(&cfg));
        fclose(f);
        config_destroy(&cfg);
        return -EINVAL;
    }
    fclose(f);
    out->path = strdup(path);
    rc = out->path ? read_all(&x, config_root_setting(&cfg), out) : -ENOMEM;
    config_destroy(&cfg);
    if (probs->n > before + 1)
        qsort(probs->v + before, probs->n - before, sizeof(*probs->v), cmp_problem);
    if (rc == 0 && probs->oom)
        rc = -ENOMEM;
    if (rc == 0 && probs->n > before)
        rc = -EINVAL;
    if (rc < 0)
        agent_config_free(out);
    return rc;
}

void agent_config_free(agent_config *c)
{
    free(c->path);
    free(c->cluster);
    free(c->node_name);
    free(c->node_address);
    for (size_t i = 0; i < c->nnode_labels; i++)
        free(c->node_labels[i]);
    free(c->node_labels);
    free(c->state_dir);
    free(c->control_socket);
    free(c->control_group);
    free(c->finder_listen);
    free(c->finder_tls_listen);
    free(c->raft_address);
    free(c->repl_listen);
    free(c->repl_socket);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->tls_ca);
    free(c->tls_crl);
    free(c->control_listen);
    free(c->metrics_address);
    free(c->node_interface);
    for (size_t i = 0; i < c->nraft_peers; i++)
        free(c->raft_peers[i]);
    free(c->raft_peers);
    free(c->instance_dir);
    free(c->cs_address);
    for (size_t i = 0; i < c->nimpls; i++) {
        free(c->impls[i].name);
        free(c->impls[i].exec);
    }
    free(c->impls);
    memset(c, 0, sizeof(*c));
}

/* *dst = a copy of v: 0 or -ENOMEM (*dst unchanged). */
static int replace_str(char **dst, const char *v)
{
    char *copy = strdup(v);

    if (!copy)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

int agent_config_resolve_address(agent_config *c, const char *ifname, const char *addr)
{
    const char *colon = c->repl_listen ? strrchr(c->repl_listen, ':') : NULL;
    char listen[32];

    if (!c->node_interface && replace_str(&c->node_interface, ifname) < 0)
        return -ENOMEM;
    if (replace_str(&c->node_address, addr) < 0)
        return -ENOMEM;
    /* listeners on every address: a new address needs no rebinding */
    if (c->cs_address_derived && replace_str(&c->cs_address, "0.0.0.0") < 0)
        return -ENOMEM;
    if (c->repl_listen_derived && colon && strncmp(c->repl_listen, "0.0.0.0:", 8) != 0) {
        snprintf(listen, sizeof(listen), "0.0.0.0:%.8s", colon + 1);
        if (replace_str(&c->repl_listen, listen) < 0)
            return -ENOMEM;
    }
    return 0;
}

const char *agent_config_cs_host(const agent_config *c)
{
    const char *h = c->cs_address;

    return !h || !*h || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 ||
                   strcmp(h, "*") == 0
               ? c->node_address
               : h;
}

const char *agent_config_impl_exec(const agent_config *c, const char *name)
{
    for (size_t i = 0; i < c->nimpls; i++)
        if (strcmp(c->impls[i].name, name) == 0)
            return c->impls[i].exec;
    return NULL;
}
