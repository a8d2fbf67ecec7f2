/* spec.c - see spec.h. */
#include "spec.h"

#include "dpr/domain.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int agent_memory_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {
        { "", 1 }, { "b", 1 }, { "k", 1000 }, { "kb", 1024 }, { "m", 1000 * 1000 },
        { "mb", 1024 * 1024 }, { "g", 1000ull * 1000 * 1000 }, { "gb", 1024ull * 1024 * 1024 },
    };
    uint64_t n = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -ERANGE;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(p, units[i].unit) != 0)
            continue;
        if (n > UINT64_MAX / units[i].mul)
            return -ERANGE;
        *out = n * units[i].mul;
        return 0;
    }
    return -EINVAL;
}

uint64_t agent_memory_max_of(uint64_t maxmemory, uint32_t max_clients)
{
    if (maxmemory == 0)
        return UINT64_MAX;
    /* the spec bounds maxmemory: no overflow */
    assert(maxmemory <= AGENT_MAXMEMORY_MAX);
    return 2 * maxmemory + maxmemory / 2 + (64ull << 20) + (uint64_t)max_clients * (32u << 10);
}

bool agent_name_valid(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '-') {
            if (s[i + 1] == '-')
                return false;
        } else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) {
            return false;
        }
    }
    return true;
}

static bool version_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > AGENT_VERSION_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '+' || *s == '-'))
            return false;
    return true;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A printable, shortened copy of a user string for messages. */
static void shown(char *out, size_t outlen, const char *s)
{
    size_t i = 0;

    for (; *s && i + 4 < outlen; s++)
        out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (*s && outlen >= 4) {
        out[outlen - 4] = '.';
        out[outlen - 3] = '.';
        out[outlen - 2] = '.';
        i = outlen - 1;
    }
    out[i] = '\0';
}

static void check_unknown(const json_t *obj, const char *prefix, const char *const *known,
                          agent_problems *p)
{
    const char *key;
    json_t *v;
    char path[160], k[64], list[256];
    size_t off = 0;

    list[0] = '\0';
    for (size_t i = 0; known[i] && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                                known[i]);
    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            if (strcmp(known[i], key) == 0)
                ok = true;
        if (ok)
            continue;
        shown(k, sizeof(k), key);
        snprintf(path, sizeof(path), "%s%s", prefix, k);
        agent_problems_add(p, path, "unknown field (known: %s)", list);
    }
}

/* Integer field in [min, max]; *out = def when absent (required: a problem). */
static void get_uint(const json_t *obj, const char *key, const char *prefix, bool required,
                     long long min, long long max, uint32_t def, uint32_t *out,
                     agent_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[160];
    long long n;

    *out = def;
    snprintf(path, sizeof(path), "%s%s", prefix, key);
    if (!v) {
        if (required)
            agent_problems_add(p, path, "required (an integer, %lld to %lld)", min, max);
        return;
    }
    if (!json_is_integer(v)) {
        agent_problems_add(p, path, "must be an integer, %lld to %lld (got %s)", min, max,
                           json_kind(v));
        return;
    }
    n = json_integer_value(v);
    if (n < min)
        agent_problems_add(p, path, "must be >= %lld (got %lld)", min, n);
    else if (n > max)
        agent_problems_add(p, path, "must be <= %lld (got %lld)", max, n);
    else
        *out = (uint32_t)n;
}

/* String field; NULL when absent or ill-typed (problem recorded). */
static const char *get_string(const json_t *obj, const char *key, const char *prefix,
                              bool required, agent_problems *p)
{
    json_t *v = json_object_get(obj, key);
    char path[160];

    snprintf(path, sizeof(path), "%s%s", prefix, key);
    if (!v) {
        if (required)
            agent_problems_add(p, path, "required (a string)");
        return NULL;
    }
    if (!json_is_string(v)) {
        agent_problems_add(p, path, "must be a string (got %s)", json_kind(v));
        return NULL;
    }
    return json_string_value(v);
}

bool agent_checkpoint_mode_valid(const char *s)
{
    return strcmp(s, "log") == 0 || strcmp(s, "full") == 0;
}

bool agent_tls_clients_valid(const char *s)
{
    return strcmp(s, "required") == 0 || strcmp(s, "optional") == 0 || strcmp(s, "off") == 0;
}

const char *agent_tls_clients_auth(const char *clients)
{
    if (strcmp(clients, "optional") == 0)
        return "optional";
    return strcmp(clients, "off") == 0 ? "no" : "yes";
}

/* "tls": {"clients": "required" | "optional" | "off"} ({} : required). */
static void get_tls(const json_t *o, const char *prefix, const agent_spec_rules *r,
                    char *out, agent_problems *p)
{
    static const char *const known[] = { "clients", NULL };
    const json_t *t = json_object_get(o, "tls");
    char path[160], inner[64], s[80];
    const char *v;
    size_t before;

    if (!t)
        return;
    snprintf(path, sizeof(path), "%stls", prefix);
    if (!json_is_object(t)) {
        agent_problems_add(p, path, "must be an object such as {\"clients\": \"required\"} "
                           "(got %s)", json_kind(t));
        return;
    }
    snprintf(inner, sizeof(inner), "%stls.", prefix);
    before = p->n;
    check_unknown(t, inner, known, p);
    v = get_string(t, "clients", inner, false, p);
    snprintf(path, sizeof(path), "%stls.clients", prefix);
    if (v && !agent_tls_clients_valid(v)) {
        shown(s, sizeof(s), v);
        agent_problems_add(p, path, "must be \"required\" (every client shows a certificate "
                           "of the cluster's CA), \"optional\" (checked when shown) or "
                           "\"off\" (none asked for) (got '%s')", s);
    } else if (p->n == before && r->no_tls) {
        snprintf(path, sizeof(path), "%stls", prefix);
        agent_problems_add(p, path, "the agents do not speak TLS: set tls.enabled in "
                           "agent.conf on every node first (docs/tls.md)");
    } else if (p->n == before) {
        snprintf(out, AGENT_TLS_CLIENTS_MAX + 1, "%s", v ? v : "required");
    }
}

/* maxmemory: bytes (an integer) or a Redis-style size ("512mb"); 0 = none. */
static void get_memory(const json_t *obj, const char *key, const char *prefix, uint64_t *out,
                       agent_problems *p)
{
    static const char *const hint = "bytes, or a string of digits with b, k, kb, m, mb, g or "
                                    "gb as in Redis: \"512mb\"";
    json_t *v = json_object_get(obj, key);
    char path[160], s[80];
    long long n;
    uint64_t bytes;
    int rc;

    *out = 0;
    snprintf(path, sizeof(path), "%s%s", prefix, key);
    if (!v)
        return;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
        if (n < 0) {
            agent_problems_add(p, path, "must be 0 (no limit) or a size in %s (got %lld)", hint,
                               n);
            return;
        }
        bytes = (uint64_t)n;
    } else if (json_is_string(v)) {
        rc = agent_memory_parse(json_string_value(v), &bytes);
        if (rc < 0) {
            shown(s, sizeof(s), json_string_value(v));
            if (rc == -ERANGE)
                agent_problems_add(p, path, "too large: '%s' (at most 16384gb)", s);
            else
                agent_problems_add(p, path, "not a memory size: '%s' (%s)", s, hint);
            return;
        }
    } else {
        agent_problems_add(p, path, "must be a memory size: %s (got %s)", hint, json_kind(v));
        return;
    }
    if (bytes != 0 && bytes < AGENT_MAXMEMORY_MIN)
        agent_problems_add(p, path, "must be 0 (no limit) or at least %llu bytes (1mb) "
                           "(got %llu)", (unsigned long long)AGENT_MAXMEMORY_MIN,
                           (unsigned long long)bytes);
    else if (bytes > AGENT_MAXMEMORY_MAX)
        agent_problems_add(p, path, "must be at most %llu bytes (16384gb) (got %llu)",
                           (unsigned long long)AGENT_MAXMEMORY_MAX, (unsigned long long)bytes);
    else
        *out = bytes;
}

static bool impl_known(const agent_spec_rules *r, const char *impl)
{
    if (!r->impls)
        return true;
    for (size_t i = 0; i < r->nimpls; i++)
        if (strcmp(r->impls[i], impl) == 0)
            return true;
    return false;
}

static void known_impls(const agent_spec_rules *r, char *out, size_t outlen)
{
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; i < r->nimpls && off < outlen; i++)
        off += (size_t)snprintf(out + off, outlen - off, "%s%s", i ? ", " : "", r->impls[i]);
    if (r->nimpls == 0)
        snprintf(out, outlen, "none configured");
}

bool agent_label_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > AGENT_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool alnum = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9');
        if (!alnum && ((i == 0 || i == n - 1) || !strchr("._-=", s[i])))
            return false;
    }
    return true;
}

bool agent_host_chars_ok(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
            return false;
    return true;
}

bool agent_node_name_valid(const char *s)
{
    return agent_host_chars_ok(s, AGENT_LABEL_MAX);
}

bool agent_selector_match(const agent_selector *sel, const char *name,
                          const char *const *labels, size_t nlabels)
{
    bool named = sel->nnodes == 0;

    for (size_t i = 0; i < sel->nnodes && !named; i++)
        named = strcmp(sel->nodes[i], name) == 0;
    if (!named)
        return false;
    for (size_t i = 0; i < sel->nlabels; i++) {
        bool has = false;
        for (size_t k = 0; k < nlabels && !has; k++)
            has = strcmp(labels[k], sel->labels[i]) == 0;
        if (!has)
            return false;
    }
    return true;
}

/* One list of the node selector: strings that pass ok, at most
 * AGENT_SELECTOR_MAX, no duplicates. */
static void get_names(const json_t *sel, const char *key, const char *prefix,
                      bool (*ok)(const char *), const char *what, const char *rule,
                      char (*out)[AGENT_LABEL_MAX + 1], uint8_t *n, agent_problems *p)
{
    json_t *v = json_object_get(sel, key), *e;
    char path[200], s[80];
    size_t i;

    *n = 0;
    if (!v)
        return;
    snprintf(path, sizeof(path), "%snode_selector.%s", prefix, key);
    if (!json_is_array(v) || json_array_size(v) > AGENT_SELECTOR_MAX) {
        agent_problems_add(p, path, "must be a list of at most %d %ss (got %s)",
                           AGENT_SELECTOR_MAX, what, json_kind(v));
        return;
    }
    json_array_foreach(v, i, e) {
        snprintf(path, sizeof(path), "%snode_selector.%s[%zu]", prefix, key, i);
        if (!json_is_string(e) || !ok(json_string_value(e))) {
            shown(s, sizeof(s), json_is_string(e) ? json_string_value(e) : "");
            agent_problems_add(p, path, "not a %s (%s)%s%s%s", what, rule,
                               json_is_string(e) ? ": '" : "", json_is_string(e) ? s : "",
                               json_is_string(e) ? "'" : "");
            continue;
        }
        for (size_t k = 0; k < *n; k++)
            if (strcmp(out[k], json_string_value(e)) == 0) {
                agent_problems_add(p, path, "'%s' is listed twice", out[k]);
                break;
            }
        snprintf(out[(*n)++], AGENT_LABEL_MAX + 1, "%s", json_string_value(e));
    }
}

/* "node_selector": {"nodes": [names], "labels": [labels]}. */
static void get_selector(const json_t *o, const char *prefix, agent_selector *sel,
                         agent_problems *p)
{
    static const char *const known[] = { "nodes", "labels", NULL };
    json_t *v = json_object_get(o, "node_selector");
    char path[160];

    memset(sel, 0, sizeof(*sel));
    if (!v)
        return;
    snprintf(path, sizeof(path), "%snode_selector", prefix);
    if (!json_is_object(v)) {
        agent_problems_add(p, path, "must be an object: {\"nodes\": [node names], "
                           "\"labels\": [labels every node must have]} (got %s)",
                           json_kind(v));
        return;
    }
    snprintf(path, sizeof(path), "%snode_selector.", prefix);
    check_unknown(v, path, known, p);
    get_names(v, "nodes", prefix, agent_node_name_valid, "node name",
              "A-Z a-z 0-9 . _ -, at most 63", sel->nodes, &sel->nnodes, p);
    get_names(v, "labels", prefix, agent_label_valid, "label", "a-z 0-9 . _ - =, at most 63",
              sel->labels, &sel->nlabels, p);
}

/* "rollout": {"min_ready_seconds", "max_unavailable", "partition",
 * "progress_deadline_seconds", "paused", "resumed"}, every field optional. */
static void get_rollout(const json_t *o, const char *prefix, agent_rollout_spec *ro,
                        agent_problems *p)
{
    static const char *const known[] = { "min_ready_seconds", "max_unavailable", "partition",
                                         "progress_deadline_seconds", "paused", "resumed",
                                         NULL };
    json_t *v = json_object_get(o, "rollout"), *paused;
    char path[160];

    memset(ro, 0, sizeof(*ro));
    ro->max_unavailable = 1;
    ro->progress_deadline_seconds = 120;
    if (!v)
        return;
    snprintf(path, sizeof(path), "%srollout", prefix);
    if (!json_is_object(v)) {
        agent_problems_add(p, path, "must be an object: {\"min_ready_seconds\", "
                           "\"max_unavailable\", \"partition\", "
                           "\"progress_deadline_seconds\", \"paused\"} (got %s)",
                           json_kind(v));
        return;
    }
    ro->given = true;
    snprintf(path, sizeof(path), "%srollout.", prefix);
    check_unknown(v, path, known, p);
    get_uint(v, "min_ready_seconds", path, false, 0, AGENT_ROLLOUT_SECONDS_MAX, 0,
             &ro->min_ready_seconds, p);
    get_uint(v, "max_unavailable", path, false, 1, AGENT_SHARDS_MAX, 1, &ro->max_unavailable,
             p);
    get_uint(v, "partition", path, false, 0, AGENT_SHARDS_MAX, 0, &ro->partition, p);
    get_uint(v, "progress_deadline_seconds", path, false, 1, AGENT_ROLLOUT_SECONDS_MAX, 120,
             &ro->progress_deadline_seconds, p);
    get_uint(v, "resumed", path, false, 0, AGENT_ROLLOUT_RESUMED_MAX, 0, &ro->resumed, p);
    paused = json_object_get(v, "paused");
    snprintf(path, sizeof(path), "%srollout.paused", prefix);
    if (paused && !json_is_boolean(paused))
        agent_problems_add(p, path, "must be true or false (got %s)", json_kind(paused));
    ro->paused = json_is_true(paused);
}

json_t *agent_rollout_spec_to_json(const agent_rollout_spec *ro)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:b}", "min_ready_seconds",
                          (json_int_t)ro->min_ready_seconds, "max_unavailable",
                          (json_int_t)ro->max_unavailable, "partition",
                          (json_int_t)ro->partition, "progress_deadline_seconds",
                          (json_int_t)ro->progress_deadline_seconds, "paused", ro->paused);

    /* (only once resumed: the specs written before it stay the same) */
    if (o && ro->resumed &&
        json_object_set_new(o, "resumed", json_integer((json_int_t)ro->resumed)) < 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

void agent_spec_keep_resumed(agent_spec *next, const agent_spec *cur)
{
    for (size_t i = 0; cur && cur->name && i < next->n; i++) {
        int c = agent_spec_find(cur, next->d[i].name);
        agent_rollout_spec *ro = &next->d[i].rollout;
        if (c < 0 || cur->d[c].rollout.resumed <= ro->resumed)
            continue;
        ro->resumed = cur->d[c].rollout.resumed;
        ro->given = true; /* (written back) */
    }
}

static void parse_deploy(const json_t *o, size_t idx, const agent_spec_rules *r,
                         agent_deploy *d, agent_problems *p)
{
    static const char *const known[] = { "name", "impl", "version", "shards",
                                         "checkpoint_interval_ms", "max_clients", "maxmemory",
                                         "checkpoint_mode", "tls", "node_selector",
                                         "replicas", "rollout", NULL };
    char prefix[48], path[160], s[80], list[512];
    const char *v;

    memset(d, 0, sizeof(*d));
    snprintf(prefix, sizeof(prefix), "cachestores[%zu].", idx);
    if (!json_is_object(o)) {
        snprintf(path, sizeof(path), "cachestores[%zu]", idx);
        agent_problems_add(p, path, "must be an object (got %s)", json_kind(o));
        return;
    }
    check_unknown(o, prefix, known, p);

    v = get_string(o, "name", prefix, true, p);
    snprintf(path, sizeof(path), "%sname", prefix);
    if (v && !agent_name_valid(v, AGENT_DEPLOY_NAME_MAX)) {
        shown(s, sizeof(s), v);
        agent_problems_add(p, path, "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at "
                           "most %d characters (got '%s')", AGENT_DEPLOY_NAME_MAX, s);
    } else if (v) {
        memcpy(d->name, v, strlen(v) + 1);
    }

    v = get_string(o, "impl", prefix, false, p);
    snprintf(path, sizeof(path), "%simpl", prefix);
    if (!v && !json_object_get(o, "impl"))
        v = AGENT_DEFAULT_IMPL;
    if (v && (strlen(v) > AGENT_SPEC_IMPL_MAX || !impl_known(r, v))) {
        shown(s, sizeof(s), v);
        known_impls(r, list, sizeof(list));
        agent_problems_add(p, path, "unknown implementation '%s' (this agent knows: %s)", s,
                           list);
    } else if (v) {
        memcpy(d->impl, v, strlen(v) + 1);
    }

    v = get_string(o, "version", prefix, true, p);
    snprintf(path, sizeof(path), "%sversion", prefix);
    if (v && !version_valid(v)) {
        shown(s, sizeof(s), v);
        agent_problems_add(p, path, "must be 1 to %d characters of A-Z a-z 0-9 . _ + - "
                           "(got '%s')", AGENT_VERSION_MAX, s);
    } else if (v) {
        memcpy(d->version, v, strlen(v) + 1);
    }

    get_uint(o, "shards", prefix, true, 1, AGENT_SHARDS_MAX, 0, &d->shards, p);
    get_uint(o, "checkpoint_interval_ms", prefix, false, AGENT_INTERVAL_MIN,
             AGENT_INTERVAL_MAX, r->default_interval_ms ? r->default_interval_ms : 100,
             &d->checkpoint_interval_ms, p);
    get_uint(o, "max_clients", prefix, false, AGENT_MAX_CLIENTS_MIN, AGENT_MAX_CLIENTS_MAX,
             r->default_max_clients ? r->default_max_clients : 10000, &d->max_clients, p);
    get_memory(o, "maxmemory", prefix, &d->maxmemory, p);
    v = get_string(o, "checkpoint_mode", prefix, false, p);
    snprintf(path, sizeof(path), "%scheckpoint_mode", prefix);
    if (v && !agent_checkpoint_mode_valid(v)) {
        shown(s, sizeof(s), v);
        agent_problems_add(p, path, "must be \"log\" (change logs between full images, "
                           "dpr-kv's default) or \"full\" (a full image every checkpoint) "
                           "(got '%s')", s);
    } else if (v) {
        memcpy(d->checkpoint_mode, v, strlen(v) + 1);
    }
    get_tls(o, prefix, r, d->tls_clients, p);
    get_selector(o, prefix, &d->selector, p);
    d->replicas = AGENT_REPLICAS_AUTO;
    if (json_object_get(o, "replicas")) {
        uint32_t n;
        get_uint(o, "replicas", prefix, false, 0, AGENT_REPLICAS_MAX, 0, &n, p);
        d->replicas = (int)n;
    }
    get_rollout(o, prefix, &d->rollout, p);
}

int agent_spec_parse(const json_t *j, const agent_spec_rules *r, agent_spec *out,
                     agent_problems *p)
{
    static const char *const known[] = { "name", "cachestores", NULL };
    agent_spec s = { NULL, 0, NULL };
    size_t before = p->n;
    const char *name;
    json_t *list;
    char shown_name[80], path[160];
    int rc = 0;

    if (!json_is_object(j)) {
        agent_problems_add(p, "", "the spec must be an object (got %s)",
                           j ? json_kind(j) : "nothing");
        return p->oom ? -ENOMEM : -EINVAL;
    }
    check_unknown(j, "", known, p);
    name = get_string(j, "name", "", true, p);
    if (name && r->cluster && strcmp(name, r->cluster) != 0) {
        shown(shown_name, sizeof(shown_name), name);
        agent_problems_add(p, "name", "must be this agent's cluster name '%s' (got '%s')",
                           r->cluster, shown_name);
    } else if (name && !r->cluster && !agent_name_valid(name, 63)) {
        agent_problems_add(p, "name", "not a valid cluster name");
    }
    list = json_object_get(j, "cachestores");
    if (!list) {
        agent_problems_add(p, "cachestores", "required (a list of deployments; an empty "
                           "list deletes every deployment)");
    } else if (!json_is_array(list)) {
        agent_problems_add(p, "cachestores", "must be a list (got %s)", json_kind(list));
    } else if (json_array_size(list) > 0) {
        s.n = json_array_size(list);
        s.d = calloc(s.n, sizeof(*s.d));
        if (!s.d) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < s.n; i++)
            parse_deploy(json_array_get(list, i), i, r, &s.d[i], p);
        for (size_t i = 0; i < s.n; i++) {
            for (size_t k = 0; k < i && s.d[i].name[0]; k++) {
                if (strcmp(s.d[i].name, s.d[k].name) == 0) {
                    snprintf(path, sizeof(path), "cachestores[%zu].name", i);
                    agent_problems_add(p, path, "duplicate name '%s' (also cachestores[%zu])",
                                       s.d[i].name, k);
                    break;
                }
                /* batch headers name the domain by this 64-bit hash: two
                 * deployments with one id could take each other's batches */
                if (dpr_domain_id(s.d[i].name, strlen(s.d[i].name)) ==
                    dpr_domain_id(s.d[k].name, strlen(s.d[k].name))) {
                    snprintf(path, sizeof(path), "cachestores[%zu].name", i);
                    agent_problems_add(p, path, "'%s' has the same DPR domain id as '%s' "
                                       "(cachestores[%zu]): rename one", s.d[i].name,
                                       s.d[k].name, k);
                    break;
                }
            }
        }
    }
    if (p->oom) {
        rc = -ENOMEM;
        goto out;
    }
    if (p->n > before) {
        rc = -EINVAL;
        goto out;
    }
    s.name = strdup(name);
    if (!s.name) {
        rc = -ENOMEM;
        goto out;
    }
    *out = s;
    return 0;
out:
    agent_spec_free(&s);
    return rc;
}

static json_t *names_json(const char (*v)[AGENT_LABEL_MAX + 1], size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *agent_deploy_to_json(const agent_deploy *d)
{
    const agent_selector *sel = &d->selector;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "name", d->name, "impl",
                          d->impl, "version", d->version, "shards", (json_int_t)d->shards,
                          "checkpoint_interval_ms", (json_int_t)d->checkpoint_interval_ms,
                          "max_clients", (json_int_t)d->max_clients, "maxmemory",
                          (json_int_t)d->maxmemory);
    json_t *s;
    bool ok;

    /* (replicas, checkpoint_mode, tls and node_selector only when given: a
     * spec without them reads as it always did) */
    if (o && d->checkpoint_mode[0] &&
        json_object_set_new(o, "checkpoint_mode", json_string(d->checkpoint_mode)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (o && d->tls_clients[0] &&
        json_object_set_new(o, "tls", json_pack("{s:s}", "clients", d->tls_clients)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (o && d->replicas != AGENT_REPLICAS_AUTO &&
        json_object_set_new(o, "replicas", json_integer(d->replicas)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (o && d->rollout.given &&
        json_object_set_new(o, "rollout", agent_rollout_spec_to_json(&d->rollout)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (!o || (sel->nnodes == 0 && sel->nlabels == 0))
        return o;
    s = json_object();
    ok = s != NULL;
    if (ok && sel->nnodes)
        ok = json_object_set_new(s, "nodes", names_json(sel->nodes, sel->nnodes)) == 0;
    if (ok && sel->nlabels)
        ok = json_object_set_new(s, "labels", names_json(sel->labels, sel->nlabels)) == 0;
    if (ok)
        ok = json_object_set(o, "node_selector", s) == 0;
    json_decref(s);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *agent_spec_to_json(const agent_spec *s)
{
    json_t *list = json_array(), *o;

    if (!list)
        return NULL;
    for (size_t i = 0; i < s->n; i++) {
        o = agent_deploy_to_json(&s->d[i]);
        if (!o || json_array_append_new(list, o) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    return json_pack("{s:s, s:o}", "name", s->name ? s->name : "", "cachestores", list);
}

int agent_spec_copy(const agent_spec *src, agent_spec *dst)
{
    agent_spec s = { NULL, src->n, NULL };

    s.name = strdup(src->name ? src->name : "");
    if (src->n) {
        s.d = malloc(src->n * sizeof(*s.d));
        if (s.d)
            memcpy(s.d, src->d, src->n * sizeof(*s.d));
    }
    if (!s.name || (src->n && !s.d)) {
        agent_spec_free(&s);
        return -ENOMEM;
    }
    *dst = s;
    return 0;
}

void agent_spec_free(agent_spec *s)
{
    free(s->name);
    free(s->d);
    s->name = NULL;
    s->d = NULL;
    s->n = 0;
}

int agent_spec_find(const agent_spec *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->d[i].name, name) == 0)
            return (int)i;
    return -1;
}
