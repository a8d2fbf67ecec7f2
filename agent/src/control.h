/*
 * control.h - the control socket on libuv: a Unix stream socket, peer
 * credential check, newline-delimited JSON with a 1 MiB line limit,
 * requests answered in order, and event streams with a bounded backlog
 * (docs/control-api.md). What a request does is the handler's business.
 */
#ifndef AGENT_CONTROL_H
#define AGENT_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "dpr/err.h"
#include "peercred.h"
#include "proto.h"

typedef struct agent_control agent_control;
typedef struct agent_client agent_client;

/* Answers one parsed request: returns the reply (a new reference; NULL for
 * an internal error reply). May call agent_client_make_stream(c). */
typedef json_t *(*agent_control_handler)(void *arg, agent_client *c, const agent_request *req);

typedef struct agent_control_config {
    const char *path;          /* socket path; its directory is created if missing */
    bool have_group;           /* false: only root is served */
    gid_t group;
    size_t max_clients;        /* 0: 256 */
    size_t max_event_backlog;  /* bytes queued to an event stream; 0: 1 MiB */
} agent_control_config;

/*
 * Binds and listens (a stale socket file is replaced; the socket is mode
 * 0666: the credential check decides). 0 or a negative errno with a message.
 */
int agent_control_open(uv_loop_t *loop, const agent_control_config *cfg,
                       agent_control_handler handler, void *arg, agent_control **out,
                       dpr_err *err);
/* After this request's reply, c only receives events. */
void agent_client_make_stream(agent_client *c);
const agent_peer *agent_client_peer(const agent_client *c);
/* Sends {"v":1,"event":event} to every event stream (event is borrowed).
 * A stream whose backlog would exceed the limit is disconnected. */
void agent_control_publish(agent_control *ctl, const json_t *event);
size_t agent_control_stream_count(const agent_control *ctl);
/* Closes the listener and every client, removes the socket file; the
 * memory goes once the loop has run the close callbacks. */
void agent_control_close(agent_control *ctl);

#endif
