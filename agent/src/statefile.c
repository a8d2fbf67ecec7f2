/* statefile.c - see statefile.h. */
#include "statefile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/fs.h"

/* The optional settings (checkpoint_mode, tls_clients) into o when set (a
 * record without them reads as before). */
static json_t *with_opt(json_t *o, const char *mode, const char *tls_clients)
{
    if (o && ((mode[0] && json_object_set_new(o, "checkpoint_mode", json_string(mode)) < 0) ||
              (tls_clients[0] &&
               json_object_set_new(o, "tls_clients", json_string(tls_clients)) < 0))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *run_json(const agent_run *r)
{
    return with_opt(json_pack("{s:I, s:s, s:s, s:I, s:I, s:I}", "generation",
                               (json_int_t)r->generation, "impl", r->impl, "version", r->version,
                               "checkpoint_interval_ms", (json_int_t)r->checkpoint_interval_ms,
                               "max_clients", (json_int_t)r->max_clients, "maxmemory",
                               (json_int_t)r->maxmemory),
                    r->checkpoint_mode, r->tls_clients);
}

static json_t *instance_json(const agent_instance *in)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:I, s:I}", "name", in->name,
                          "deployment", in->deployment, "shard", (json_int_t)in->shard,
                          "worker", (json_int_t)in->worker, "port", (json_int_t)in->port,
                          "impl", in->impl, "version", in->version, "checkpoint_interval_ms",
                          (json_int_t)in->checkpoint_interval_ms, "max_clients",
                          (json_int_t)in->max_clients);

    o = with_opt(o, in->checkpoint_mode, in->tls_clients);
    if (o && json_object_set_new(o, "token", json_string(in->token)) < 0) {
        json_decref(o);
        return NULL;
    }
    if (o && (json_object_set_new(o, "maxmemory", json_integer((json_int_t)in->maxmemory)) < 0 ||
              json_object_set_new(o, "committed", json_boolean(in->committed)) < 0 ||
              json_object_set_new(o, "generation", json_integer((json_int_t)in->generation)) < 0 ||
              json_object_set_new(o, "running", run_json(&in->run)) < 0)) {
        json_decref(o);
        o = NULL;
    }
    if (o && in->metrics_port &&
        json_object_set_new(o, "metrics_port", json_integer((json_int_t)in->metrics_port)) < 0) {
        json_decref(o);
        o = NULL;
    }
    /* (only while set: an instance at rest reads as it always did) */
    if (o && in->rolled_at_ms &&
        json_object_set_new(o, "rolled_at_ms", json_integer((json_int_t)in->rolled_at_ms)) < 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static json_t *instances_json(const agent_instance *v, size_t n, bool retiring)
{
    json_t *a = json_array(), *o;

    for (size_t i = 0; a && i < n; i++) {
        o = instance_json(&v[i]);
        if (o && retiring && (json_object_set_new(o, "unit_retired",
                                                  json_boolean(v[i].unit_retired)) < 0 ||
                              json_object_set_new(o, "held", json_boolean(v[i].held)) < 0)) {
            json_decref(o);
            o = NULL;
        }
        if (json_array_append_new(a, o) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *layouts_json(const agent_layout *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:I}", "deployment",
                                               v[i].deployment, "epoch", (json_int_t)v[i].epoch,
                                               "shards", (json_int_t)v[i].shards,
                                               "target_epoch", (json_int_t)v[i].target_epoch,
                                               "target_shards",
                                               (json_int_t)v[i].target_shards)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *rollouts_json(const agent_rollout_rec *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        json_t *o = json_pack("{s:s, s:s, s:o}", "deployment", v[i].deployment, "halted",
                              v[i].halted, "previous", v[i].has_previous
                                                           ? agent_deploy_to_json(&v[i].previous)
                                                           : json_null());
        if (o && v[i].resumed &&
            json_object_set_new(o, "resumed", json_integer((json_int_t)v[i].resumed)) < 0) {
            json_decref(o);
            o = NULL;
        }
        if (json_array_append_new(a, o) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *state_to_json(const agent_state *st)
{
    json_t *spec = st->spec.name ? agent_spec_to_json(&st->spec) : json_null();
    json_t *j = json_pack("{s:i, s:I, s:I, s:o*, s:o*, s:o*, s:o*}", "format",
                          AGENT_STATE_FORMAT, "generation", (json_int_t)st->generation,
                          "next_worker", (json_int_t)st->next_worker, "spec", spec, "instances",
                          instances_json(st->inst, st->ninst, false), "retiring",
                          instances_json(st->retiring, st->nretiring, true), "layouts",
                          layouts_json(st->layouts, st->nlayouts));

    /* (only when set: a single node's file reads as it always did) */
    if (j && st->placed && json_object_set_new(j, "placed", json_true()) < 0) {
        json_decref(j);
        return NULL;
    }
    if (j && st->nrollouts &&
        json_object_set_new(j, "rollouts", rollouts_json(st->rollouts, st->nrollouts)) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ---- loading ------------------------------------------------------------ */

static int get_int(const json_t *o, const char *key, long long min, long long max,
                   long long *out, const char *where, dpr_err *err)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return dpr_err_set(err, -EBADMSG, "%s.%s: missing or not an integer in %lld..%lld",
                           where, key, min, max);
    *out = json_integer_value(v);
    return 0;
}

static int get_str(const json_t *o, const char *key, char *dst, size_t cap, const char *where,
                   dpr_err *err)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap)
        return dpr_err_set(err, -EBADMSG, "%s.%s: missing or not a string of 1..%zu characters",
                           where, key, cap - 1);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* The optional checkpoint_mode and tls_clients of o into r ("" when
 * absent). */
static int get_opt(const json_t *o, const char *where, agent_run *r, dpr_err *err)
{
    r->checkpoint_mode[0] = r->tls_clients[0] = '\0';
    if (json_object_get(o, "checkpoint_mode") &&
        (get_str(o, "checkpoint_mode", r->checkpoint_mode, sizeof(r->checkpoint_mode), where,
                 err) < 0 ||
         !agent_checkpoint_mode_valid(r->checkpoint_mode)))
        return dpr_err_set(err, -EBADMSG, "%s.checkpoint_mode: not \"log\" or \"full\"",
                           where);
    if (json_object_get(o, "tls_clients") &&
        (get_str(o, "tls_clients", r->tls_clients, sizeof(r->tls_clients), where, err) < 0 ||
         !agent_tls_clients_valid(r->tls_clients)))
        return dpr_err_set(err, -EBADMSG, "%s.tls_clients: not \"required\", \"optional\" "
                           "or \"off\"", where);
    return 0;
}

/* What reaches a process: impl, version, checkpoint interval, max_clients,
 * checkpoint_mode, tls_clients (an instance's, or what its process runs). */
static int parse_settings(const json_t *o, const char *where, agent_run *r, dpr_err *err)
{
    long long v;
    int rc;

    if ((rc = get_str(o, "impl", r->impl, sizeof(r->impl), where, err)) < 0 ||
        (rc = get_str(o, "version", r->version, sizeof(r->version), where, err)) < 0)
        return rc;
    if ((rc = get_int(o, "checkpoint_interval_ms", AGENT_INTERVAL_MIN, AGENT_INTERVAL_MAX, &v,
                      where, err)) < 0)
        return rc;
    r->checkpoint_interval_ms = (uint32_t)v;
    if ((rc = get_int(o, "max_clients", AGENT_MAX_CLIENTS_MIN, AGENT_MAX_CLIENTS_MAX, &v, where,
                      err)) < 0)
        return rc;
    r->max_clients = (uint32_t)v;
    return get_opt(o, where, r, err);
}

/* "running": what an instance's process runs. */
static int parse_run(const json_t *o, const char *where, agent_run *r, dpr_err *err)
{
    char at[96];
    long long v;
    int rc;

    memset(r, 0, sizeof(*r));
    snprintf(at, sizeof(at), "%s.running", where);
    if (!json_is_object(o) ||
        json_object_size(o) != 6u + (json_object_get(o, "checkpoint_mode") != NULL) +
                                   (json_object_get(o, "tls_clients") != NULL))
        return dpr_err_set(err, -EBADMSG, "%s: not a record of what the process runs", at);
    if ((rc = get_int(o, "generation", 0, INT64_MAX, &v, at, err)) < 0)
        return rc;
    r->generation = (uint64_t)v;
    if ((rc = parse_settings(o, at, r, err)) < 0)
        return rc;
    if ((rc = get_int(o, "maxmemory", 0, (long long)AGENT_MAXMEMORY_MAX, &v, at, err)) < 0)
        return rc;
    r->maxmemory = (uint64_t)v;
    return 0;
}

/* 0, or 1 when the record had no token (written before tokens existed) and
 * was given a new one; a negative errno. */
static int parse_instance(const json_t *o, const char *where, bool retiring, agent_instance *in,
                          dpr_err *err)
{
    agent_run settings;
    json_t *tok;
    int fresh = 0;
    char name[AGENT_INSTANCE_NAME_MAX + 16];
    json_t *flag;
    long long v;
    size_t want;
    int rc;

    memset(in, 0, sizeof(*in));
    memset(&settings, 0, sizeof(settings));
    if (!json_is_object(o))
        return dpr_err_set(err, -EBADMSG, "%s: not an instance record", where);
    want = retiring ? 10u : 9u;
    /* fields newer than the format: absent in older files */
    want += retiring && json_object_get(o, "held") != NULL;
    want += json_object_get(o, "maxmemory") != NULL;
    want += json_object_get(o, "committed") != NULL;
    want += json_object_get(o, "token") != NULL;
    want += json_object_get(o, "generation") != NULL;
    want += json_object_get(o, "running") != NULL;
    want += json_object_get(o, "rolled_at_ms") != NULL;
    want += json_object_get(o, "metrics_port") != NULL;
    want += json_object_get(o, "checkpoint_mode") != NULL;
    want += json_object_get(o, "tls_clients") != NULL;
    if (json_object_size(o) != want)
        return dpr_err_set(err, -EBADMSG, "%s: not an instance record", where);
    tok = json_object_get(o, "token");
    if (tok) {
        if (!json_is_string(tok) || !agent_token_valid(json_string_value(tok)))
            return dpr_err_set(err, -EBADMSG, "%s.token: not %d hexadecimal digits", where,
                               AGENT_TOKEN_LEN);
        memcpy(in->token, json_string_value(tok), AGENT_TOKEN_LEN + 1);
    } else {
        /* recorded before tokens existed: the instance gets one now (the
         * finder adopts it at the instance's next registration) */
        rc = agent_token_new(in->token);
        if (rc < 0)
            return dpr_err_set(err, rc, "%s: cannot make a token: %s", where, strerror(-rc));
        fresh = 1;
    }
    flag = json_object_get(o, "committed");
    if (flag && !json_is_boolean(flag))
        return dpr_err_set(err, -EBADMSG, "%s.committed: not a boolean", where);
    in->committed = json_is_true(flag);
    if (json_object_get(o, "maxmemory")) {
        if ((rc = get_int(o, "maxmemory", 0, (long long)AGENT_MAXMEMORY_MAX, &v, where, err)) < 0)
            return rc;
        in->maxmemory = (uint64_t)v;
    }
    if (retiring) {
        flag = json_object_get(o, "unit_retired");
        if (!json_is_boolean(flag))
            return dpr_err_set(err, -EBADMSG, "%s.unit_retired: missing or not a boolean", where);
        in->unit_retired = json_is_true(flag);
        flag = json_object_get(o, "held");
        if (flag && !json_is_boolean(flag))
            return dpr_err_set(err, -EBADMSG, "%s.held: not a boolean", where);
        in->held = json_is_true(flag);
    }
    if ((rc = get_str(o, "name", in->name, sizeof(in->name), where, err)) < 0 ||
        (rc = get_str(o, "deployment", in->deployment, sizeof(in->deployment), where, err)) < 0 ||
        (rc = parse_settings(o, where, &settings, err)) < 0)
        return rc;
    memcpy(in->impl, settings.impl, sizeof(in->impl));
    memcpy(in->version, settings.version, sizeof(in->version));
    in->checkpoint_interval_ms = settings.checkpoint_interval_ms;
    in->max_clients = settings.max_clients;
    memcpy(in->checkpoint_mode, settings.checkpoint_mode, sizeof(in->checkpoint_mode));
    memcpy(in->tls_clients, settings.tls_clients, sizeof(in->tls_clients));
    if ((rc = get_int(o, "shard", 0, AGENT_SHARDS_MAX - 1, &v, where, err)) < 0)
        return rc;
    in->shard = (uint32_t)v;
    if ((rc = get_int(o, "worker", 1, INT64_MAX, &v, where, err)) < 0)
        return rc;
    in->worker = (uint64_t)v;
    if ((rc = get_int(o, "port", 1, 65535, &v, where, err)) < 0)
        return rc;
    in->port = (uint16_t)v;
    /* absent: none (files from before metrics ports, or none configured) */
    if (json_object_get(o, "metrics_port")) {
        if ((rc = get_int(o, "metrics_port", 1, 65535, &v, where, err)) < 0)
            return rc;
        in->metrics_port = (uint16_t)v;
    }
    snprintf(name, sizeof(name), "%s-%u", in->deployment, in->shard);
    if (strcmp(name, in->name) != 0)
        return dpr_err_set(err, -EBADMSG, "%s: name '%s' does not match deployment '%s' shard %u",
                           where, in->name, in->deployment, in->shard);
    /* generation and running: absent in files from before roll-outs (the
     * process runs the settings, of the state's generation: see the caller) */
    agent_instance_set_running(in);
    if (json_object_get(o, "generation")) {
        if ((rc = get_int(o, "generation", 1, INT64_MAX, &v, where, err)) < 0)
            return rc;
        in->generation = (uint64_t)v;
        in->run.generation = in->generation;
    }
    if (json_object_get(o, "running") && (rc = parse_run(json_object_get(o, "running"), where,
                                                         &in->run, err)) < 0)
        return rc;
    if (json_object_get(o, "rolled_at_ms")) {
        if ((rc = get_int(o, "rolled_at_ms", 1, INT64_MAX, &v, where, err)) < 0)
            return rc;
        in->rolled_at_ms = (uint64_t)v;
    }
    return fresh;
}

/* 0, 1 when some record was given a new token, or a negative errno. */
static int parse_instances(const json_t *a, const char *key, agent_instance **out, size_t *n,
                           dpr_err *err)
{
    char where[64];
    int rc, fresh = 0;

    *out = NULL;
    *n = 0;
    if (!json_is_array(a))
        return dpr_err_set(err, -EBADMSG, "'%s' is missing or not a list", key);
    if (json_array_size(a) == 0)
        return 0;
    *out = calloc(json_array_size(a), sizeof(**out));
    if (!*out)
        return -ENOMEM;
    for (size_t i = 0; i < json_array_size(a); i++) {
        snprintf(where, sizeof(where), "%s[%zu]", key, i);
        rc = parse_instance(json_array_get(a, i), where, strcmp(key, "retiring") == 0,
                            &(*out)[i], err);
        if (rc < 0)
            return rc;
        fresh |= rc;
        (*n)++;
    }
    return fresh;
}

/* The instances must be exactly those the spec implies (placed: some of
 * them, at least one per deployment), with its settings. */
static int check_consistency(const agent_state *st, dpr_err *err)
{
    size_t want = 0;

    for (size_t d = 0; d < st->spec.n; d++)
        want += st->spec.d[d].shards;
    if (!st->placed && want != st->ninst)
        return dpr_err_set(err, -EBADMSG, "the spec implies %zu instances but %zu are recorded",
                           want, st->ninst);
    if (st->placed && (st->ninst > want || st->ninst < st->spec.n))
        return dpr_err_set(err, -EBADMSG, "the spec's %zu deployments (%zu instances) do not "
                           "fit the %zu instances recorded", st->spec.n, want, st->ninst);
    for (size_t i = 0; i < st->ninst; i++) {
        const agent_instance *in = &st->inst[i];
        int d = agent_spec_find(&st->spec, in->deployment);
        const agent_deploy *dep = d >= 0 ? &st->spec.d[d] : NULL;

        if (!dep || in->shard >= dep->shards || strcmp(in->impl, dep->impl) != 0 ||
            strcmp(in->version, dep->version) != 0 ||
            in->checkpoint_interval_ms != dep->checkpoint_interval_ms ||
            in->max_clients != dep->max_clients || in->maxmemory != dep->maxmemory ||
            strcmp(in->checkpoint_mode, dep->checkpoint_mode) != 0 ||
            strcmp(in->tls_clients, dep->tls_clients) != 0)
            return dpr_err_set(err, -EBADMSG, "instance '%s' does not match the recorded spec",
                               in->name);
        if (in->worker >= st->next_worker)
            return dpr_err_set(err, -EBADMSG,
                               "instance '%s' has worker id %llu, not below next_worker %llu",
                               in->name, (unsigned long long)in->worker,
                               (unsigned long long)st->next_worker);
        for (size_t k = 0; k < i; k++)
            if (strcmp(st->inst[k].name, in->name) == 0)
                return dpr_err_set(err, -EBADMSG, "instance '%s' appears twice", in->name);
    }
    for (size_t i = 0; i < st->nretiring; i++)
        if (st->retiring[i].worker >= st->next_worker)
            return dpr_err_set(err, -EBADMSG,
                               "retiring instance '%s' has worker id %llu, not below "
                               "next_worker %llu",
                               st->retiring[i].name, (unsigned long long)st->retiring[i].worker,
                               (unsigned long long)st->next_worker);
    /* worker ids and ports are unique over live and retiring instances */
    for (size_t i = 0; i < st->ninst + st->nretiring; i++) {
        const agent_instance *a = i < st->ninst ? &st->inst[i] : &st->retiring[i - st->ninst];
        for (size_t k = 0; k < i; k++) {
            const agent_instance *b = k < st->ninst ? &st->inst[k]
                                                    : &st->retiring[k - st->ninst];
            /* (placed: worker ids are unique per deployment, and an
             * instance that moved away and came back is a new incarnation
             * while the old one retires: its token differs) */
            bool same_worker = a->worker == b->worker &&
                               (!st->placed || (strcmp(a->deployment, b->deployment) == 0 &&
                                                strcmp(a->token, b->token) == 0));
            if (same_worker || a->port == b->port)
                return dpr_err_set(err, -EBADMSG,
                                   "instances '%s' and '%s' share a worker id or a port",
                                   b->name, a->name);
        }
    }
    return 0;
}

/* "layouts" (absent in files from before layouts: none). */
static int parse_layouts(const json_t *a, agent_state *st, dpr_err *err)
{
    char where[48];
    long long v;
    int rc;

    if (!a)
        return 0;
    if (!json_is_array(a))
        return dpr_err_set(err, -EBADMSG, "layouts: not a list");
    if (json_array_size(a) == 0)
        return 0;
    st->layouts = calloc(json_array_size(a), sizeof(*st->layouts));
    if (!st->layouts)
        return -ENOMEM;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *o = json_array_get(a, i);
        agent_layout *l = &st->layouts[i];
        snprintf(where, sizeof(where), "layouts[%zu]", i);
        if (!json_is_object(o) || json_object_size(o) != 5)
            return dpr_err_set(err, -EBADMSG, "%s: not a layout record", where);
        if ((rc = get_str(o, "deployment", l->deployment, sizeof(l->deployment), where,
                          err)) < 0)
            return rc;
        if ((rc = get_int(o, "epoch", 0, INT64_MAX, &v, where, err)) < 0)
            return rc;
        l->epoch = (uint64_t)v;
        if ((rc = get_int(o, "shards", 0, AGENT_SHARDS_MAX, &v, where, err)) < 0)
            return rc;
        l->shards = (uint32_t)v;
        if ((rc = get_int(o, "target_epoch", 0, INT64_MAX, &v, where, err)) < 0)
            return rc;
        l->target_epoch = (uint64_t)v;
        if ((rc = get_int(o, "target_shards", 0, AGENT_SHARDS_MAX, &v, where, err)) < 0)
            return rc;
        l->target_shards = (uint32_t)v;
        if (l->target_epoch && (l->target_epoch <= l->epoch || l->target_shards == 0))
            return dpr_err_set(err, -EBADMSG, "%s: a resize to epoch %llu from epoch %llu",
                               where, (unsigned long long)l->target_epoch,
                               (unsigned long long)l->epoch);
        for (size_t k = 0; k < i; k++)
            if (strcmp(st->layouts[k].deployment, l->deployment) == 0)
                return dpr_err_set(err, -EBADMSG, "%s: a second layout of '%s'", where,
                                   l->deployment);
        st->nlayouts++;
    }
    return 0;
}

/* "rollouts" (absent in files from before roll-outs, and when no
 * deployment was changed): deployments of the spec, once each. */
static int parse_rollouts(const json_t *a, agent_state *st, dpr_err *err)
{
    agent_spec_rules rules = { NULL, NULL, 0, 0, 0, false };
    agent_problems probs;
    agent_rollout_rec *r;
    char where[48], name[AGENT_DEPLOY_NAME_MAX + 1];
    json_t *prev, *halted, *wrap;
    agent_spec one;
    int rc;

    if (!a)
        return 0;
    if (!json_is_array(a))
        return dpr_err_set(err, -EBADMSG, "rollouts: not a list");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *o = json_array_get(a, i);
        snprintf(where, sizeof(where), "rollouts[%zu]", i);
        /* ("resumed": only once the spec's count is above 0) */
        if (!json_is_object(o) ||
            json_object_size(o) != 3u + (json_object_get(o, "resumed") != NULL))
            return dpr_err_set(err, -EBADMSG, "%s: not a roll-out record", where);
        if ((rc = get_str(o, "deployment", name, sizeof(name), where, err)) < 0)
            return rc;
        if (!st->spec.name || agent_spec_find(&st->spec, name) < 0 ||
            agent_state_rollout(st, name))
            return dpr_err_set(err, -EBADMSG, "%s: '%s' is not a deployment of the spec, or "
                               "appears twice", where, name);
        halted = json_object_get(o, "halted");
        if (!json_is_string(halted) || json_string_length(halted) >= AGENT_HALT_REASON_MAX)
            return dpr_err_set(err, -EBADMSG, "%s.halted: not a string of at most %d "
                               "characters", where, AGENT_HALT_REASON_MAX - 1);
        prev = json_object_get(o, "previous");
        if (!prev || (!json_is_null(prev) && !json_is_object(prev)))
            return dpr_err_set(err, -EBADMSG, "%s.previous: not a deployment or null", where);
        if ((rc = agent_state_rollout_add(st, name, &r)) < 0)
            return rc;
        memcpy(r->halted, json_string_value(halted), json_string_length(halted) + 1);
        if (json_object_get(o, "resumed")) {
            long long v;
            if ((rc = get_int(o, "resumed", 1, AGENT_ROLLOUT_RESUMED_MAX, &v, where, err)) < 0)
                return rc;
            r->resumed = (uint32_t)v;
        }
        if (json_is_null(prev))
            continue;
        wrap = json_pack("{s:s, s:[O]}", "name", st->spec.name, "cachestores", prev);
        if (!wrap)
            return -ENOMEM;
        agent_problems_init(&probs);
        rc = agent_spec_parse(wrap, &rules, &one, &probs);
        json_decref(wrap);
        if (rc == -EINVAL)
            rc = dpr_err_set(err, -EBADMSG, "%s.previous: %s: %s", where, probs.v[0].where,
                             probs.v[0].message);
        agent_problems_free(&probs);
        if (rc < 0)
            return rc;
        r->previous = one.d[0];
        r->has_previous = true;
        agent_spec_free(&one);
    }
    return 0;
}

int agent_state_from_json(const json_t *j, agent_state *out, dpr_err *err)
{
    static const char *const keys[] = { "format", "generation", "next_worker", "spec",
                                        "instances", "retiring", "layouts", "placed",
                                        "rollouts", NULL };
    agent_spec_rules rules = { NULL, NULL, 0, 0, 0, false };
    agent_problems probs;
    agent_state st;
    const char *key;
    json_t *v;
    long long n;
    int rc, fresh = 0;

    agent_state_init(&st);
    agent_problems_init(&probs);
    if (!json_is_object(j)) {
        rc = dpr_err_set(err, -EBADMSG, "not a JSON object");
        goto out;
    }
    json_object_foreach((json_t *)j, key, v) {
        bool ok = false;
        for (size_t i = 0; keys[i]; i++)
            ok |= strcmp(keys[i], key) == 0;
        if (!ok) {
            rc = dpr_err_set(err, -EBADMSG, "unknown field '%.64s'", key);
            goto out;
        }
    }
    if ((rc = get_int(j, "format", 0, INT32_MAX, &n, "state", err)) < 0)
        goto out;
    if (n != AGENT_STATE_FORMAT) {
        rc = dpr_err_set(err, -EBADMSG, "format %lld is not the one this agent reads (%d)", n,
                         AGENT_STATE_FORMAT);
        goto out;
    }
    if ((rc = get_int(j, "generation", 0, INT64_MAX, &n, "state", err)) < 0)
        goto out;
    st.generation = (uint64_t)n;
    if ((rc = get_int(j, "next_worker", 1, INT64_MAX, &n, "state", err)) < 0)
        goto out;
    st.next_worker = (uint64_t)n;
    v = json_object_get(j, "placed");
    if (v && !json_is_boolean(v)) {
        rc = dpr_err_set(err, -EBADMSG, "'placed' must be true or false");
        goto out;
    }
    st.placed = json_is_true(v);
    v = json_object_get(j, "spec");
    if (!v) {
        rc = dpr_err_set(err, -EBADMSG, "'spec' is missing");
        goto out;
    }
    if (!json_is_null(v)) {
        rc = agent_spec_parse(v, &rules, &st.spec, &probs);
        if (rc == -EINVAL)
            rc = dpr_err_set(err, -EBADMSG, "spec.%s: %s", probs.v[0].where,
                             probs.v[0].message);
        if (rc < 0)
            goto out;
    }
    rc = parse_instances(json_object_get(j, "instances"), "instances", &st.inst, &st.ninst, err);
    if (rc >= 0) {
        fresh |= rc;
        rc = parse_instances(json_object_get(j, "retiring"), "retiring", &st.retiring,
                             &st.nretiring, err);
    }
    if (rc >= 0) {
        fresh |= rc;
        rc = parse_layouts(json_object_get(j, "layouts"), &st, err);
    }
    if (rc >= 0)
        rc = parse_rollouts(json_object_get(j, "rollouts"), &st, err);
    if (rc >= 0)
        rc = check_consistency(&st, err);
    if (rc < 0)
        goto out;
    /* records from before roll-outs: of the state's generation */
    for (size_t i = 0; i < st.ninst; i++) {
        if (st.inst[i].generation)
            continue;
        st.inst[i].generation = st.generation;
        if (!agent_instance_outdated(&st.inst[i]))
            st.inst[i].run.generation = st.generation;
    }
    agent_instances_sort(st.inst, st.ninst);
    agent_instances_sort(st.retiring, st.nretiring);
    *out = st;
    agent_problems_free(&probs);
    return fresh;
out:
    if (rc == -ENOMEM)
        dpr_err_set(err, rc, "out of memory");
    agent_problems_free(&probs);
    agent_state_free(&st);
    return rc;
}

int agent_statefile_load(const char *path, agent_state *out, dpr_err *err)
{
    json_error_t jerr;
    json_t *j;
    int rc;

    j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        if (access(path, F_OK) < 0 && errno == ENOENT)
            return dpr_err_set(err, -ENOENT, "%s: no state file", path);
        if (access(path, R_OK) < 0) {
            rc = -errno;
            return dpr_err_set(err, rc, "%s: cannot read: %s", path, strerror(-rc));
        }
        return dpr_err_set(err, -EBADMSG, "%s is damaged: line %d, column %d: %s", path,
                           jerr.line, jerr.column, jerr.text);
    }
    rc = agent_state_from_json(j, out, err);
    json_decref(j);
    if (rc < 0)
        dpr_err_prefix(err, "%s is damaged", path);
    return rc; /* 1: tokens were made, to be saved */
}

/* ---- saving ------------------------------------------------------------- */

int agent_statefile_save(const char *path, const agent_state *st, dpr_err *err)
{
    json_t *j = state_to_json(st);
    char *text = j ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    dpr_buf file = DPR_BUF_INIT;
    int rc;

    json_decref(j);
    if (text) {
        dpr_buf_append_str(&file, text);
        dpr_buf_append(&file, "\n", 1);
    }
    if (!text || dpr_buf_failed(&file))
        rc = dpr_err_set(err, -ENOMEM, "out of memory");
    else
        rc = dpr_replace_file(path, file.data, file.len, 0600, true, err);
    free(text);
    dpr_buf_free(&file);
    return rc;
}

int agent_statefile_lock(const char *dir, int *fd, dpr_err *err)
{
    char path[PATH_MAX];
    int rc;

    if (dpr_path_join(path, sizeof(path), dir, "agent.lock") < 0)
        return dpr_err_set(err, -ENAMETOOLONG, "state directory path too long: %.80s...", dir);
    rc = dpr_lock_file(path, 0, fd, err);
    if (rc == -EBUSY)
        return dpr_err_set(err, rc, "%s is locked: another dpr-agent uses %s", path, dir);
    return rc;
}
