/* control.c - see control.h. */
#include "control.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/list.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/uvutil.h"

#define READ_CHUNK (64 * 1024)
/* A client that does not read its replies stops being read past this. */
#define MAX_PENDING_OUTPUT (8u * 1024 * 1024)
/* A refused caller that sends nothing gets its error after this long. */
#define DENY_WAIT_MS 2000

struct agent_client {
    uv_pipe_t pipe;
    agent_control *ctl;
    agent_client *prev, *next;
    dpr_buf in;           /* bytes of the line being read */
    agent_peer peer;
    size_t writes_pending;
    bool stream;          /* events only */
    bool make_stream;     /* becomes a stream after the current reply */
    bool close_after_write;
    bool closing;
    bool paused;
    bool denied;          /* answer the first request with permission_denied */
    bool timer_open;
    int handles;          /* pipe + timer still to be closed */
    uv_timer_t deny_timer;
    char name[64];        /* for logs: "pid 12 uid 0" */
};

struct agent_control {
    uv_loop_t *loop;
    uv_pipe_t listener;
    bool listener_open;
    bool closing;
    size_t open_handles;  /* listener + clients still to be closed */
    agent_control_config cfg;
    char *path;
    agent_control_handler handler;
    void *arg;
    agent_client *clients;
    size_t nclients, nstreams;
    char readbuf[READ_CHUNK];
};

static void maybe_free_ctl(agent_control *ctl)
{
    if (ctl->closing && ctl->open_handles == 0) {
        free(ctl->path);
        free(ctl);
    }
}

static void on_client_closed(uv_handle_t *h)
{
    agent_client *c = h->data;
    agent_control *ctl = c->ctl;

    if (--c->handles > 0)
        return;
    dpr_buf_free(&c->in);
    free(c);
    ctl->open_handles--;
    maybe_free_ctl(ctl);
}

static void client_close(agent_client *c)
{
    agent_control *ctl = c->ctl;

    if (c->closing)
        return;
    c->closing = true;
    dpr_uv_discard_input((uv_handle_t *)&c->pipe);
    DPR_LIST_REMOVE(ctl->clients, c);
    ctl->nclients--;
    if (c->stream)
        ctl->nstreams--;
    if (c->timer_open) {
        c->timer_open = false;
        uv_close((uv_handle_t *)&c->deny_timer, on_client_closed);
    }
    uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void process_lines(agent_client *c);

static void on_write_done(uv_stream_t *s, int status)
{
    agent_client *c = s->data;

    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        if (!dpr_uv_peer_gone(status))
            log_warning("control client %s: write failed: %s", c->name, uv_strerror(status));
        client_close(c);
        return;
    }
    if (c->close_after_write && c->writes_pending == 0) {
        client_close(c);
        return;
    }
    if (c->paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) < MAX_PENDING_OUTPUT / 2) {
        c->paused = false;
        process_lines(c);
        if (!c->closing && !c->paused && !c->close_after_write &&
            uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
            client_close(c);
    }
}

/* Queues one line (takes the memory of *line; *line is empty afterwards). */
static int send_line(agent_client *c, dpr_buf *line)
{
    int rc;

    if (c->closing) {
        dpr_buf_free(line);
        return -EPIPE;
    }
    rc = dpr_uv_write((uv_stream_t *)&c->pipe, line, on_write_done);
    if (rc < 0)
        return rc;
    c->writes_pending++;
    return 0;
}

static void send_json(agent_client *c, json_t *reply)
{
    static const char oom[] = "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"internal\","
                              "\"message\":\"out of memory\"}}\n";
    dpr_buf line = DPR_BUF_INIT;

    if (!reply || agent_json_line(reply, &line) < 0) {
        dpr_buf_reset(&line);
        if (dpr_buf_append(&line, oom, sizeof(oom) - 1) < 0) {
            dpr_buf_free(&line);
            client_close(c);
            return;
        }
    }
    if (send_line(c, &line) < 0)
        client_close(c);
}

/* Sends `reply` (consumed) as the connection's last line: stops reading
 * and closes once it is written. */
static void send_last(agent_client *c, json_t *reply)
{
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->close_after_write = true;
    send_json(c, reply);
    json_decref(reply);
    if (!c->closing && c->writes_pending == 0)
        client_close(c);
}

/* Sends an error and closes the connection once it is written. */
static void fail_and_close(agent_client *c, const char *code, const char *msg)
{
    send_last(c, agent_reply_error(NULL, code, msg, NULL));
}

static const char *deny_message(const agent_control *ctl)
{
    return ctl->cfg.have_group
        ? "permission denied: the control API is for root and members of the agent's "
          "control group"
        : "permission denied: the control API is for root (the control group does not "
          "exist on this host)";
}

/* The one reply a refused caller gets: to its first request (with its id). */
static void deny(agent_client *c, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *req = line ? json_loadb(line, len, 0, &jerr) : NULL;
    json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
    json_t *reply = agent_reply_error(id, AGENT_E_PERMISSION_DENIED, deny_message(c->ctl),
                                      NULL);

    json_decref(req);
    c->denied = false;
    send_last(c, reply);
}

static void on_deny_timer(uv_timer_t *t)
{
    agent_client *c = t->data;

    if (!c->closing && c->denied)
        deny(c, NULL, 0);
}

static void handle_line(agent_client *c, char *line, size_t len)
{
    agent_control *ctl = c->ctl;
    agent_request req;
    json_t *reply = NULL;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return; /* blank lines are ignored */
    if (c->denied) {
        deny(c, line, len);
        return;
    }
    if (agent_request_parse(line, len, &req, &reply) == 0) {
        reply = ctl->handler(ctl->arg, c, &req);
        if (!reply)
            reply = agent_reply_error(req.id, AGENT_E_INTERNAL, "internal error (see the "
                                      "agent's log)", NULL);
        agent_request_free(&req);
    }
    send_json(c, reply);
    json_decref(reply);
    if (c->make_stream && !c->closing) {
        c->make_stream = false;
        c->stream = true;
        ctl->nstreams++;
    }
}

static void process_lines(agent_client *c)
{
    size_t start = 0;

    while (!c->closing && !c->stream && !c->close_after_write) {
        char *nl = memchr(c->in.data + start, '\n', c->in.len - start);
        size_t n;

        if (!nl)
            break;
        n = (size_t)(nl - (c->in.data + start));
        if (n > AGENT_MAX_LINE) {
            start = c->in.len;
            fail_and_close(c, AGENT_E_BAD_REQUEST, "request line longer than 1 MiB");
            break;
        }
        handle_line(c, c->in.data + start, n);
        start += n + 1;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > MAX_PENDING_OUTPUT) {
            c->paused = true;
            uv_read_stop((uv_stream_t *)&c->pipe);
            break;
        }
    }
    if (c->stream)
        start = c->in.len; /* what follows `events` is ignored */
    dpr_buf_consume(&c->in, start);
    if (!c->closing && !c->close_after_write && c->in.len > AGENT_MAX_LINE) {
        if (c->denied)
            deny(c, NULL, 0);
        else
            fail_and_close(c, AGENT_E_BAD_REQUEST, "request line longer than 1 MiB");
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    agent_client *c = h->data;

    (void)suggested;
    buf->base = c->ctl->readbuf;
    buf->len = sizeof(c->ctl->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    agent_client *c = s->data;

    if (c->closing)
        return;
    if (nread == UV_EOF && c->denied) {
        deny(c, NULL, 0);
        return;
    }
    if (nread == UV_EOF) {
        uv_read_stop(s);
        if (c->writes_pending == 0)
            client_close(c);
        else
            c->close_after_write = true;
        return;
    }
    if (nread < 0) {
        client_close(c);
        return;
    }
    if (nread == 0 || c->stream || c->close_after_write)
        return;
    if (dpr_buf_append(&c->in, buf->base, (size_t)nread) < 0) {
        fail_and_close(c, AGENT_E_INTERNAL, "out of memory");
        return;
    }
    process_lines(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    agent_control *ctl = l->data;
    agent_client *c;
    uv_os_fd_t fd;
    int rc;

    if (status < 0) {
        log_warning("control socket: accept failed: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->ctl = ctl;
    snprintf(c->name, sizeof(c->name), "?");
    if (uv_pipe_init(ctl->loop, &c->pipe, 0) < 0) {
        free(c);
        return;
    }
    c->handles = 1;
    c->pipe.data = c;
    ctl->open_handles++;
    DPR_LIST_PREPEND(ctl->clients, c);
    ctl->nclients++;
    rc = uv_accept(l, (uv_stream_t *)&c->pipe);
    if (rc < 0 || uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0) {
        client_close(c);
        return;
    }
    rc = agent_peer_check(fd, ctl->cfg.have_group, ctl->cfg.group, &c->peer);
    snprintf(c->name, sizeof(c->name), "pid %d uid %u", (int)c->peer.pid,
             (unsigned)c->peer.uid);
    if (rc <= 0) {
        log_notice("control client %s refused: neither root nor in the control group",
                   c->name);
        /* answer its first request (so a client that writes, then reads, gets
         * the error and not a broken pipe), or after DENY_WAIT_MS */
        c->denied = true;
        if (uv_timer_init(ctl->loop, &c->deny_timer) == 0) {
            c->deny_timer.data = c;
            c->timer_open = true;
            c->handles++;
            uv_timer_start(&c->deny_timer, on_deny_timer, DENY_WAIT_MS, 0);
        }
        if (!c->timer_open || uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
            deny(c, NULL, 0);
        return;
    }
    if (ctl->nclients > ctl->cfg.max_clients) {
        fail_and_close(c, AGENT_E_UNAVAILABLE, "too many control connections; retry later");
        return;
    }
    log_debug("control client %s connected", c->name);
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
        client_close(c);
}

static int ensure_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    int rc = dpr_dirname(path, dir, sizeof(dir));

    return rc < 0 ? rc : dpr_mkdir_p(dir, 0755, NULL);
}

static void on_listener_closed(uv_handle_t *h)
{
    agent_control *ctl = h->data;

    ctl->open_handles--;
    maybe_free_ctl(ctl);
}

int agent_control_open(uv_loop_t *loop, const agent_control_config *cfg,
                       agent_control_handler handler, void *arg, agent_control **out,
                       dpr_err *err)
{
    agent_control *ctl = calloc(1, sizeof(*ctl));
    struct stat sb;
    int rc;

    if (!ctl || !(ctl->path = strdup(cfg->path))) {
        free(ctl);
        return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    ctl->loop = loop;
    ctl->cfg = *cfg;
    ctl->cfg.path = ctl->path;
    if (!ctl->cfg.max_clients)
        ctl->cfg.max_clients = 256;
    if (!ctl->cfg.max_event_backlog)
        ctl->cfg.max_event_backlog = 1024 * 1024;
    ctl->handler = handler;
    ctl->arg = arg;
    rc = ensure_parent_dir(ctl->path);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot create the directory of %s: %s", ctl->path,
                    strerror(-rc));
        goto fail;
    }
    /* a socket left by an agent that died: the state lock says none runs */
    if (lstat(ctl->path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            rc = dpr_err_set(err, -EEXIST, "%s exists and is not a socket", ctl->path);
            goto fail;
        }
        unlink(ctl->path);
    }
    rc = uv_pipe_init(loop, &ctl->listener, 0);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot create the control socket: %s", uv_strerror(rc));
        goto fail;
    }
    ctl->listener.data = ctl;
    ctl->listener_open = true;
    ctl->open_handles = 1;
    rc = uv_pipe_bind(&ctl->listener, ctl->path);
    if (rc == 0 && chmod(ctl->path, 0666) < 0)
        rc = -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->listener, 64, on_connection);
    if (rc < 0) {
        dpr_err_set(err, rc, "cannot listen on %s: %s", ctl->path, uv_strerror(rc));
        agent_control_close(ctl);
        return rc;
    }
    *out = ctl;
    return 0;
fail:
    free(ctl->path);
    free(ctl);
    return rc;
}

void agent_client_make_stream(agent_client *c)
{
    c->make_stream = true;
}

const agent_peer *agent_client_peer(const agent_client *c)
{
    return &c->peer;
}

size_t agent_control_stream_count(const agent_control *ctl)
{
    return ctl->nstreams;
}

void agent_control_publish(agent_control *ctl, const json_t *event)
{
    json_t *wrap;
    agent_client *c, *next;
    dpr_buf line = DPR_BUF_INIT, copy;
    int rc;

    if (!ctl || ctl->nstreams == 0)
        return;
    wrap = json_pack("{s:i, s:O}", "v", AGENT_PROTO_VERSION, "event", event);
    rc = wrap ? agent_json_line(wrap, &line) : -ENOMEM;
    json_decref(wrap);
    if (rc < 0) {
        dpr_buf_free(&line);
        return;
    }
    for (c = ctl->clients; c; c = next) {
        next = c->next;
        if (!c->stream || c->closing || c->close_after_write)
            continue;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) + line.len >
            ctl->cfg.max_event_backlog) {
            log_notice("event client %s does not keep up (%zu bytes queued): disconnecting it",
                       c->name, uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe));
            client_close(c);
            continue;
        }
        /* each write owns its bytes */
        dpr_buf_init(&copy);
        if (dpr_buf_append(&copy, line.data, line.len) < 0) {
            dpr_buf_free(&copy);
            client_close(c);
            continue;
        }
        if (send_line(c, &copy) < 0)
            client_close(c);
    }
    dpr_buf_free(&line);
}

void agent_control_close(agent_control *ctl)
{
    if (!ctl || ctl->closing)
        return;
    ctl->closing = true;
    while (ctl->clients)
        client_close(ctl->clients);
    if (ctl->listener_open) {
        ctl->listener_open = false;
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
        unlink(ctl->path);
    }
    maybe_free_ctl(ctl);
}
