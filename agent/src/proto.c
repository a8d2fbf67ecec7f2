/* proto.c - see proto.h. */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = { "apply", "plan", "status", "delete", "events",
                                        "nodes", "node_remove", "rollout" };

const char *agent_op_name(agent_op op)
{
    return (size_t)op < sizeof(op_names) / sizeof(op_names[0]) ? op_names[op] : "?";
}

json_t *agent_reply_ok(json_t *id, json_t *result)
{
    json_t *r = json_pack("{s:i, s:b, s:o}", "v", AGENT_PROTO_VERSION, "ok", 1, "result",
                          result ? result : json_object());

    if (r && id && json_object_set(r, "id", id) < 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

json_t *agent_reply_error(json_t *id, const char *code, const char *message, json_t *details)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message), *r;

    if (e && details && json_object_set_new(e, "details", details) < 0) {
        json_decref(e);
        return NULL;
    }
    if (!e) {
        json_decref(details);
        return NULL;
    }
    r = json_pack("{s:i, s:b, s:o}", "v", AGENT_PROTO_VERSION, "ok", 0, "error", e);
    if (r && id && json_object_set(r, "id", id) < 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

json_t *agent_problems_json(const agent_problems *p)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < p->n; i++) {
        if (json_array_append_new(a, json_pack("{s:s, s:s}", "path", p->v[i].where, "message",
                                               p->v[i].message)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static int append_json(const char *p, size_t n, void *data)
{
    return dpr_buf_append(data, p, n) < 0 ? -1 : 0;
}

int agent_json_line(const json_t *j, dpr_buf *out)
{
    if (json_dump_callback(j, append_json, out, JSON_COMPACT | JSON_ENSURE_ASCII) < 0 ||
        dpr_buf_append(out, "\n", 1) < 0)
        return -ENOMEM;
    return 0;
}

static int fail(json_t *id, const char *code, json_t **reply, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(json_t *id, const char *code, json_t **reply, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    *reply = agent_reply_error(id, code, msg, NULL);
    return *reply ? -EINVAL : -ENOMEM;
}

/* Every key of obj must be in allowed; returns the first other key or NULL. */
static const char *unknown_key(const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(allowed[i], key) == 0;
        if (!ok)
            return key;
    }
    return NULL;
}

static int parse_args(agent_request *req, json_t *args, json_t **reply)
{
    static const char *const apply_keys[] = { "spec", "dry_run", NULL };
    static const char *const plan_keys[] = { "spec", NULL };
    static const char *const name_keys[] = { "name", NULL };
    static const char *const rollout_keys[] = { "name", "action", NULL };
    static const char *const actions[] = { "status", "pause", "resume", "undo", NULL };
    static const char *const none[] = { NULL };
    const char *const *allowed = none;
    const char *op = agent_op_name(req->op), *bad;
    json_t *v;

    switch (req->op) {
    case AGENT_OP_APPLY: allowed = apply_keys; break;
    case AGENT_OP_PLAN: allowed = plan_keys; break;
    case AGENT_OP_STATUS:
    case AGENT_OP_DELETE:
    case AGENT_OP_NODE_REMOVE: allowed = name_keys; break;
    case AGENT_OP_ROLLOUT: allowed = rollout_keys; break;
    default: break;
    }
    bad = unknown_key(args, allowed);
    if (bad)
        return fail(req->id, AGENT_E_BAD_REQUEST, reply, "unknown argument '%.64s' for op '%s'",
                    bad, op);
    if (req->op == AGENT_OP_APPLY || req->op == AGENT_OP_PLAN) {
        req->spec = json_object_get(args, "spec");
        if (!req->spec)
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "op '%s' needs args.spec", op);
    }
    if (req->op == AGENT_OP_APPLY && (v = json_object_get(args, "dry_run"))) {
        if (!json_is_boolean(v))
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "args.dry_run must be true or "
                        "false");
        req->dry_run = json_is_true(v);
    }
    if (req->op == AGENT_OP_STATUS || req->op == AGENT_OP_DELETE ||
        req->op == AGENT_OP_NODE_REMOVE) {
        v = json_object_get(args, "name");
        if (v && !json_is_string(v))
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "args.name must be a string");
        if (!v && req->op != AGENT_OP_STATUS)
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "op '%s' needs args.name", op);
        req->name = v ? json_string_value(v) : NULL;
    }
    if (req->op == AGENT_OP_ROLLOUT) {
        v = json_object_get(args, "name");
        if (!json_is_string(v))
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "op 'rollout' needs args.name "
                        "(a deployment)");
        req->name = json_string_value(v);
        v = json_object_get(args, "action");
        for (size_t i = 0; json_is_string(v) && actions[i] && !req->action; i++)
            if (strcmp(actions[i], json_string_value(v)) == 0)
                req->action = actions[i];
        if (!req->action)
            return fail(req->id, AGENT_E_BAD_REQUEST, reply, "op 'rollout' needs args.action: "
                        "status, pause, resume or undo");
    }
    return 0;
}

int agent_request_parse(const char *line, size_t len, agent_request *req, json_t **reply)
{
    static const char *const top_keys[] = { "v", "id", "op", "args", NULL };
    json_error_t jerr;
    json_t *root, *v, *op, *args;
    const char *bad;
    size_t i;
    int rc;

    memset(req, 0, sizeof(*req));
    *reply = NULL;
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(NULL, AGENT_E_BAD_REQUEST, reply, "not JSON: %s (at character %d)",
                    jerr.text, jerr.position);
    req->root = root;
    if (!json_is_object(root)) {
        rc = fail(NULL, AGENT_E_BAD_REQUEST, reply, "a request must be a JSON object");
        goto out;
    }
    req->id = json_object_get(root, "id");
    v = json_object_get(root, "v");
    if (!v) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "missing field 'v' (the protocol "
                  "version, 1)");
        goto out;
    }
    if (!json_is_integer(v)) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "field 'v' must be an integer");
        goto out;
    }
    if (json_integer_value(v) != AGENT_PROTO_VERSION) {
        rc = fail(req->id, AGENT_E_UNSUPPORTED_VERSION, reply, "protocol version %lld is "
                  "not supported; this agent speaks version %d", json_integer_value(v),
                  AGENT_PROTO_VERSION);
        goto out;
    }
    bad = unknown_key(root, top_keys);
    if (bad) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "unknown field '%.64s' (a request has "
                  "v, id, op, args)", bad);
        goto out;
    }
    op = json_object_get(root, "op");
    if (!json_is_string(op)) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "missing or non-string field 'op'");
        goto out;
    }
    for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (strcmp(op_names[i], json_string_value(op)) == 0)
            break;
    if (i == sizeof(op_names) / sizeof(op_names[0])) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "unknown op '%.64s' (apply, plan, "
                  "status, delete, events, nodes, node_remove, rollout)", json_string_value(op));
        goto out;
    }
    req->op = (agent_op)i;
    args = json_object_get(root, "args");
    if (args && !json_is_object(args)) {
        rc = fail(req->id, AGENT_E_BAD_REQUEST, reply, "field 'args' must be an object");
        goto out;
    }
    if (args) {
        rc = parse_args(req, args, reply);
    } else {
        json_t *empty = json_object();
        rc = empty ? parse_args(req, empty, reply) : -ENOMEM;
        json_decref(empty);
    }
out:
    if (rc < 0) {
        json_decref(root);
        memset(req, 0, sizeof(*req));
    }
    return rc;
}

void agent_request_free(agent_request *req)
{
    json_decref(req->root);
    memset(req, 0, sizeof(*req));
}

json_t *agent_reply_spec_invalid(json_t *id, const agent_problems *p)
{
    char msg[200];

    snprintf(msg, sizeof(msg), "the spec is invalid (%zu problem%s); nothing was changed", p->n,
             p->n == 1 ? "" : "s");
    return agent_reply_error(id, AGENT_E_SPEC_INVALID, msg, agent_problems_json(p));
}
