/*
 * proto.h - the control API's framing-free part (docs/control-api.md):
 * one request line -> a checked request, and reply/event objects -> lines.
 * Pure: no I/O.
 */
#ifndef AGENT_PROTO_H
#define AGENT_PROTO_H

#include <jansson.h>
#include <stddef.h>

#include "common/buf.h"
#include "problems.h"

#define AGENT_PROTO_VERSION 1
#define AGENT_MAX_LINE (1024 * 1024) /* bytes, without the '\n' */

typedef enum agent_op {
    AGENT_OP_APPLY,
    AGENT_OP_PLAN,
    AGENT_OP_STATUS,
    AGENT_OP_DELETE,
    AGENT_OP_EVENTS,
    AGENT_OP_NODES,
    AGENT_OP_NODE_REMOVE,
    AGENT_OP_ROLLOUT,
} agent_op;
#define AGENT_OP_COUNT (AGENT_OP_ROLLOUT + 1)

/* Stable error codes. */
#define AGENT_E_BAD_REQUEST "bad_request"
#define AGENT_E_UNSUPPORTED_VERSION "unsupported_version"
#define AGENT_E_PERMISSION_DENIED "permission_denied"
#define AGENT_E_SPEC_INVALID "spec_invalid"
#define AGENT_E_NOT_FOUND "not_found"
#define AGENT_E_UNAVAILABLE "unavailable"
#define AGENT_E_INTERNAL "internal"

typedef struct agent_request {
    json_t *id;          /* borrowed from root; NULL when absent */
    agent_op op;
    /* args, checked for the op: */
    json_t *spec;        /* apply, plan (borrowed) */
    int dry_run;         /* apply */
    const char *name;    /* status (NULL: all), delete, node_remove, rollout */
    const char *action;  /* rollout: "status", "pause", "resume", "undo" */
    json_t *root;        /* owns everything above */
} agent_request;

/*
 * Parses one line (without its '\n'). 0 and *req filled (free with
 * agent_request_free); or a negative errno with *reply set to the error
 * reply to send (bad_request, unsupported_version; -ENOMEM: *reply may be
 * NULL).
 */
int agent_request_parse(const char *line, size_t len, agent_request *req, json_t **reply);
void agent_request_free(agent_request *req);

/* {"v":1,"id":id,"ok":true,"result":result}; steals result; id may be NULL. */
json_t *agent_reply_ok(json_t *id, json_t *result);
/* {"v":1,"id":id,"ok":false,"error":{"code","message"[,"details"]}}; steals details. */
json_t *agent_reply_error(json_t *id, const char *code, const char *message, json_t *details);
/* spec_invalid: "the spec is invalid (N problems); nothing was changed",
 * with the problems as details. */
json_t *agent_reply_spec_invalid(json_t *id, const agent_problems *p);
/* details for spec_invalid: [{"path": ..., "message": ...}, ...] */
json_t *agent_problems_json(const agent_problems *p);
/* Appends j as one line to out: compact JSON (non-ASCII escaped) + '\n'.
 * 0, or -ENOMEM (then out's content is incomplete). */
int agent_json_line(const json_t *j, dpr_buf *out);

const char *agent_op_name(agent_op op);

#endif
