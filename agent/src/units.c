/* units.c - see units.h. */
#include "units.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "common/clock.h"
#include "common/log.h"
#include "log_instance.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SD_SERVICE_IFACE "org.freedesktop.systemd1.Service"
#define UNIT_PATH_PREFIX "/org/freedesktop/systemd1/unit"
#define RETRY_MS 3000
#define RECENT_JOBS 64
#define NAME_MAX_ 96

typedef struct job {
    struct job *next;
    char path[160];
    char instance[NAME_MAX_];
    agent_unit_op op;
} job;

typedef struct recent_job {
    char path[160];
    char result[32];
} recent_job;

typedef struct call_ctx {
    agent_units *u;
    agent_unit_op op;
    int kind;               /* CALL_OP, CALL_GETALL, CALL_SUBSCRIBE */
    bool service;           /* CALL_GETALL of the Service interface */
    char instance[NAME_MAX_];
} call_ctx;

enum { CALL_OP, CALL_GETALL, CALL_SUBSCRIBE };

struct agent_units {
    uv_loop_t *loop;
    agent_units_hooks hooks;
    sd_bus *bus;
    uv_poll_t *poll;        /* per connection; freed in its close callback */
    uv_timer_t bus_timer;   /* sd-bus timeouts */
    uv_timer_t retry_timer;
    uv_idle_t kick;         /* process the bus on the next loop turn */
    int open_handles;
    bool closing;
    bool connected;         /* Subscribe succeeded */
    bool processing;
    char error[300];
    job *jobs;
    recent_job recent[RECENT_JOBS];
    size_t recent_next;
};

static void bus_update(agent_units *u);
static void disconnect(agent_units *u, const char *why);

const char *agent_unit_op_name(agent_unit_op op)
{
    switch (op) {
    case AGENT_UNIT_START: return "start";
    case AGENT_UNIT_RESTART: return "restart";
    case AGENT_UNIT_STOP: return "stop";
    case AGENT_UNIT_CLEAN: return "clean";
    case AGENT_UNIT_RESET_FAILED: return "reset-failed";
    case AGENT_UNIT_SET_MEMORY_MAX: return "set-memory-max";
    case AGENT_UNIT_RELOAD: return "reload";
    }
    return "?";
}

/* ---- names ---------------------------------------------------------------- */

static void unit_name(const char *instance, char *out, size_t outlen)
{
    snprintf(out, outlen, AGENT_UNIT_PREFIX "%s" AGENT_UNIT_SUFFIX, instance);
}

/* The instance of one of our unit names, or false. */
static bool instance_of(const char *unit, char *out, size_t outlen)
{
    size_t n = strlen(unit), pre = strlen(AGENT_UNIT_PREFIX), suf = strlen(AGENT_UNIT_SUFFIX);

    if (n <= pre + suf || strncmp(unit, AGENT_UNIT_PREFIX, pre) != 0 ||
        strcmp(unit + n - suf, AGENT_UNIT_SUFFIX) != 0 || n - pre - suf >= outlen)
        return false;
    memcpy(out, unit + pre, n - pre - suf);
    out[n - pre - suf] = '\0';
    return true;
}

static int unit_path(const char *instance, char **path)
{
    char unit[NAME_MAX_ + 40];

    unit_name(instance, unit, sizeof(unit));
    return sd_bus_path_encode(UNIT_PATH_PREFIX, unit, path);
}

/* ---- the loop side --------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    agent_units *u = h->data;

    if (--u->open_handles == 0 && u->closing)
        free(u);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    bus_update(p->data);
}

static void on_bus_timer(uv_timer_t *t)
{
    bus_update(t->data);
}

static void on_kick(uv_idle_t *h)
{
    agent_units *u = h->data;

    uv_idle_stop(&u->kick);
    bus_update(u);
}

/* Something was queued: let the loop flush it (never process re-entrantly). */
static void kick(agent_units *u)
{
    if (!u->closing && !uv_is_active((uv_handle_t *)&u->kick))
        uv_idle_start(&u->kick, on_kick);
}

/* Processes what is pending, then re-arms the poll and the timer. */
static void bus_update(agent_units *u)
{
    uint64_t timeout = UINT64_MAX, now;
    int events, rc, uvev = 0;

    if (!u->bus || u->processing)
        return;
    u->processing = true;
    for (;;) {
        rc = sd_bus_process(u->bus, NULL);
        if (rc < 0) {
            char why[200];
            u->processing = false;
            snprintf(why, sizeof(why), "connection to the system bus lost: %s", strerror(-rc));
            disconnect(u, why);
            return;
        }
        if (rc == 0 || !u->bus)
            break;
    }
    u->processing = false;
    if (!u->bus)
        return;
    events = sd_bus_get_events(u->bus);
    if (events < 0) {
        disconnect(u, "connection to the system bus lost");
        return;
    }
    if (events & POLLIN)
        uvev |= UV_READABLE;
    if (events & POLLOUT)
        uvev |= UV_WRITABLE;
    uv_poll_start(u->poll, uvev, on_poll);
    if (sd_bus_get_timeout(u->bus, &timeout) >= 0 && timeout != UINT64_MAX) {
        now = dpr_mono_ns() / 1000u; /* sd-bus: CLOCK_MONOTONIC in usec */
        uint64_t ms = timeout > now ? (timeout - now + 999) / 1000 : 0;
        uv_timer_start(&u->bus_timer, on_bus_timer, ms, 0);
    } else {
        uv_timer_stop(&u->bus_timer);
    }
}

/* ---- properties -------------------------------------------------------------- */

static int read_string_prop(sd_bus_message *m, char *dst, size_t cap)
{
    const char *s = NULL;
    int rc = sd_bus_message_read(m, "v", "s", &s);

    if (rc >= 0)
        snprintf(dst, cap, "%s", s ? s : "");
    return rc;
}

/* Reads an a{sv} of unit or service properties into *p. */
static int read_props(sd_bus_message *m, agent_unit_props *p)
{
    const char *name, *contents;
    char type;
    int rc;

    rc = sd_bus_message_enter_container(m, 'a', "{sv}");
    if (rc < 0)
        return rc;
    while ((rc = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
        rc = sd_bus_message_read(m, "s", &name);
        if (rc < 0)
            return rc;
        rc = sd_bus_message_peek_type(m, &type, &contents);
        if (rc < 0)
            return rc;
        if (strcmp(contents, "s") == 0 && strcmp(name, "ActiveState") == 0) {
            rc = read_string_prop(m, p->active_state, sizeof(p->active_state));
            p->have |= AGENT_UP_ACTIVE;
        } else if (strcmp(contents, "s") == 0 && strcmp(name, "SubState") == 0) {
            rc = read_string_prop(m, p->sub_state, sizeof(p->sub_state));
            p->have |= AGENT_UP_SUB;
        } else if (strcmp(contents, "s") == 0 && strcmp(name, "LoadState") == 0) {
            rc = read_string_prop(m, p->load_state, sizeof(p->load_state));
            p->have |= AGENT_UP_LOAD;
        } else if (strcmp(contents, "s") == 0 && strcmp(name, "Result") == 0) {
            rc = read_string_prop(m, p->result, sizeof(p->result));
            p->have |= AGENT_UP_RESULT;
        } else if (strcmp(contents, "u") == 0 && strcmp(name, "NRestarts") == 0) {
            rc = sd_bus_message_read(m, "v", "u", &p->n_restarts);
            p->have |= AGENT_UP_RESTARTS;
        } else if (strcmp(contents, "u") == 0 && strcmp(name, "MainPID") == 0) {
            rc = sd_bus_message_read(m, "v", "u", &p->main_pid);
            p->have |= AGENT_UP_PID;
        } else if (strcmp(contents, "t") == 0 && strcmp(name, "ExecMainStartTimestamp") == 0) {
            rc = sd_bus_message_read(m, "v", "t", &p->started_usec);
            p->have |= AGENT_UP_STARTED;
        } else if (strcmp(contents, "s") == 0 && strcmp(name, "StatusText") == 0) {
            rc = read_string_prop(m, p->status_text, sizeof(p->status_text));
            p->have |= AGENT_UP_STATUS_TEXT;
        } else if (strcmp(contents, "t") == 0 && strcmp(name, "MemoryMax") == 0) {
            rc = sd_bus_message_read(m, "v", "t", &p->memory_max);
            p->have |= AGENT_UP_MEMORY_MAX;
        } else {
            rc = sd_bus_message_skip(m, "v");
        }
        if (rc < 0)
            return rc;
        rc = sd_bus_message_exit_container(m);
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return rc;
    return sd_bus_message_exit_container(m);
}

static int call_getall(agent_units *u, const char *instance, const char *iface);

static int on_props_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    agent_units *u = userdata;
    agent_unit_props p;
    char *unit = NULL, instance[NAME_MAX_];
    const char *iface;
    int rc;

    (void)ret_error;
    if (sd_bus_path_decode(sd_bus_message_get_path(m), UNIT_PATH_PREFIX, &unit) <= 0)
        return 0;
    if (!instance_of(unit, instance, sizeof(instance))) {
        free(unit);
        return 0;
    }
    free(unit);
    memset(&p, 0, sizeof(p));
    rc = sd_bus_message_read(m, "s", &iface);
    if (rc < 0 || (strcmp(iface, SD_UNIT_IFACE) != 0 && strcmp(iface, SD_SERVICE_IFACE) != 0))
        return 0;
    rc = read_props(m, &p);
    if (rc < 0) {
        agent_log_instance(DPR_LOG_WARNING, instance, "cannot parse a PropertiesChanged signal: %s",
                           strerror(-rc));
        return 0;
    }
    /* properties sent without values: read them */
    if (sd_bus_message_enter_container(m, 'a', "s") > 0) {
        const char *name;
        bool ours = false;
        while (sd_bus_message_read(m, "s", &name) > 0)
            ours |= !strcmp(name, "ActiveState") || !strcmp(name, "SubState") ||
                    !strcmp(name, "NRestarts") || !strcmp(name, "MainPID") ||
                    !strcmp(name, "Result") || !strcmp(name, "StatusText");
        sd_bus_message_exit_container(m);
        if (ours)
            call_getall(u, instance, iface);
    }
    /* systemd sends the Service interface's half of a change first, then
     * the Unit interface's (dbus-unit.c, send_changed_signal: "clients
     * may rely on this order to get atomic behavior") */
    if (p.have && strcmp(iface, SD_SERVICE_IFACE) == 0)
        p.have |= AGENT_UP_FIRST_HALF;
    if (p.have && u->hooks.props)
        u->hooks.props(u->hooks.arg, instance, &p);
    return 0;
}

/* ---- calls ------------------------------------------------------------------- */

static void free_ctx(void *userdata)
{
    free(userdata);
}

static call_ctx *new_ctx(agent_units *u, int kind, const char *instance, agent_unit_op op)
{
    call_ctx *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->u = u;
    c->kind = kind;
    c->op = op;
    if (instance)
        snprintf(c->instance, sizeof(c->instance), "%s", instance);
    return c;
}

/* Sends m with a floating slot that frees ctx when it goes. */
static int send_async(agent_units *u, sd_bus_message *m, sd_bus_message_handler_t cb,
                      call_ctx *ctx)
{
    sd_bus_slot *slot = NULL;
    int rc = sd_bus_call_async(u->bus, &slot, m, cb, ctx, 0);

    if (rc < 0) {
        free(ctx);
        return rc;
    }
    sd_bus_slot_set_destroy_callback(slot, free_ctx);
    sd_bus_slot_set_floating(slot, 1);
    kick(u);
    return 0;
}

static int on_getall(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    call_ctx *c = userdata;
    agent_units *u = c->u;
    agent_unit_props p;
    int rc;

    (void)ret_error;
    memset(&p, 0, sizeof(p));
    if (c->service)
        p.have |= AGENT_UP_SERVICE_READ;
    if (sd_bus_message_is_method_error(m, NULL)) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        agent_log_instance(DPR_LOG_WARNING, c->instance, "cannot read the unit's properties: %s",
                           e && e->message ? e->message : "?");
    } else if ((rc = read_props(m, &p)) < 0) {
        agent_log_instance(DPR_LOG_WARNING, c->instance, "cannot parse the unit's properties: %s",
                           strerror(-rc));
    }
    if (p.have && u->hooks.props)
        u->hooks.props(u->hooks.arg, c->instance, &p);
    return 0;
}

static int call_getall(agent_units *u, const char *instance, const char *iface)
{
    sd_bus_message *m = NULL;
    char *path = NULL;
    call_ctx *ctx;
    int rc;

    if (!u->bus)
        return -ENOTCONN;
    rc = unit_path(instance, &path);
    if (rc < 0)
        return rc;
    rc = sd_bus_message_new_method_call(u->bus, &m, SD_DEST, path,
                                        "org.freedesktop.DBus.Properties", "GetAll");
    free(path);
    if (rc >= 0)
        rc = sd_bus_message_append(m, "s", iface);
    if (rc >= 0) {
        ctx = new_ctx(u, CALL_GETALL, instance, AGENT_UNIT_START);
        if (ctx)
            ctx->service = strcmp(iface, SD_SERVICE_IFACE) == 0;
        rc = ctx ? send_async(u, m, on_getall, ctx) : -ENOMEM;
    }
    sd_bus_message_unref(m);
    return rc;
}

int agent_units_watch(agent_units *u, const char *instance)
{
    int rc;

    if (!u->connected)
        return -ENOTCONN;
    rc = call_getall(u, instance, SD_UNIT_IFACE);
    if (rc >= 0)
        rc = call_getall(u, instance, SD_SERVICE_IFACE);
    return rc < 0 ? rc : 0;
}

static void report_done(agent_units *u, const char *instance, agent_unit_op op,
                        const char *ename, const char *emsg)
{
    if (u->hooks.done)
        u->hooks.done(u->hooks.arg, instance, op, ename, emsg);
}

static void job_finished(agent_units *u, const char *instance, agent_unit_op op,
                         const char *result)
{
    char msg[128];

    if (strcmp(result, "done") == 0) {
        report_done(u, instance, op, NULL, NULL);
        return;
    }
    snprintf(msg, sizeof(msg), "the %s job ended with result '%s'", agent_unit_op_name(op),
             result);
    report_done(u, instance, op, "dpr.JobFailed", msg);
}

static int on_op_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    call_ctx *c = userdata;
    agent_units *u = c->u;
    const char *path = NULL;
    job *j;

    (void)ret_error;
    if (sd_bus_message_is_method_error(m, NULL)) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        report_done(u, c->instance, c->op, e && e->name ? e->name : "dpr.Error",
                    e && e->message ? e->message : "failed");
        return 0;
    }
    if (c->op == AGENT_UNIT_CLEAN || c->op == AGENT_UNIT_RESET_FAILED ||
        c->op == AGENT_UNIT_SET_MEMORY_MAX) {
        report_done(u, c->instance, c->op, NULL, NULL);
        return 0;
    }
    if (sd_bus_message_read(m, "o", &path) < 0 || !path) {
        report_done(u, c->instance, c->op, "dpr.Error", "no job in systemd's reply");
        return 0;
    }
    /* the job may already have ended (JobRemoved came first) */
    for (size_t i = 0; i < RECENT_JOBS; i++) {
        if (strcmp(u->recent[i].path, path) == 0) {
            u->recent[i].path[0] = '\0';
            job_finished(u, c->instance, c->op, u->recent[i].result);
            return 0;
        }
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        report_done(u, c->instance, c->op, "dpr.Error", "out of memory");
        return 0;
    }
    snprintf(j->path, sizeof(j->path), "%s", path);
    snprintf(j->instance, sizeof(j->instance), "%s", c->instance);
    j->op = c->op;
    j->next = u->jobs;
    u->jobs = j;
    return 0;
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    agent_units *u = userdata;
    const char *path, *unit, *result;
    char instance[NAME_MAX_];
    uint32_t id;
    job **pp, *j;

    (void)ret_error;
    if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
        return 0;
    if (!instance_of(unit, instance, sizeof(instance)))
        return 0;
    for (pp = &u->jobs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) {
            j = *pp;
            *pp = j->next;
            job_finished(u, j->instance, j->op, result);
            free(j);
            return 0;
        }
    }
    snprintf(u->recent[u->recent_next].path, sizeof(u->recent[0].path), "%s", path);
    snprintf(u->recent[u->recent_next].result, sizeof(u->recent[0].result), "%s", result);
    u->recent_next = (u->recent_next + 1) % RECENT_JOBS;
    return 0;
}

int agent_units_request(agent_units *u, const char *instance, agent_unit_op op)
{
    sd_bus_message *m = NULL;
    char unit[NAME_MAX_ + 40];
    const char *member;
    call_ctx *ctx;
    int rc;

    if (!u->connected)
        return -ENOTCONN;
    unit_name(instance, unit, sizeof(unit));
    switch (op) {
    case AGENT_UNIT_START: member = "StartUnit"; break;
    case AGENT_UNIT_RESTART: member = "RestartUnit"; break;
    case AGENT_UNIT_STOP: member = "StopUnit"; break;
    case AGENT_UNIT_CLEAN: member = "CleanUnit"; break;
    case AGENT_UNIT_RESET_FAILED: member = "ResetFailedUnit"; break;
    case AGENT_UNIT_RELOAD: member = "ReloadUnit"; break;
    default: return -EINVAL; /* SET_MEMORY_MAX: agent_units_set_memory_max */
    }
    rc = sd_bus_message_new_method_call(u->bus, &m, SD_DEST, SD_PATH, SD_MANAGER, member);
    if (rc < 0)
        return rc;
    if (op == AGENT_UNIT_CLEAN)
        rc = sd_bus_message_append(m, "sas", unit, 1, "state");
    else if (op == AGENT_UNIT_RESET_FAILED)
        rc = sd_bus_message_append(m, "s", unit);
    else
        rc = sd_bus_message_append(m, "ss", unit, "replace");
    if (rc >= 0) {
        ctx = new_ctx(u, CALL_OP, instance, op);
        rc = ctx ? send_async(u, m, on_op_reply, ctx) : -ENOMEM;
    }
    sd_bus_message_unref(m);
    return rc < 0 ? rc : 0;
}

int agent_units_set_memory_max(agent_units *u, const char *instance, uint64_t bytes)
{
    sd_bus_message *m = NULL;
    char unit[NAME_MAX_ + 40];
    call_ctx *ctx;
    int rc;

    if (!u->connected)
        return -ENOTCONN;
    unit_name(instance, unit, sizeof(unit));
    rc = sd_bus_message_new_method_call(u->bus, &m, SD_DEST, SD_PATH, SD_MANAGER,
                                        "SetUnitProperties");
    if (rc < 0)
        return rc;
    /* runtime: a drop-in under /run/systemd/system.control, gone at reboot
     * like the instance files; systemd applies it to the running cgroup */
    rc = sd_bus_message_append(m, "sb", unit, 1);
    if (rc >= 0)
        rc = sd_bus_message_append(m, "a(sv)", 1, "MemoryMax", "t", bytes);
    if (rc >= 0) {
        ctx = new_ctx(u, CALL_OP, instance, AGENT_UNIT_SET_MEMORY_MAX);
        rc = ctx ? send_async(u, m, on_op_reply, ctx) : -ENOMEM;
    }
    sd_bus_message_unref(m);
    return rc < 0 ? rc : 0;
}

/* ---- connection -------------------------------------------------------------- */

static void on_retry(uv_timer_t *t);

static void schedule_retry(agent_units *u)
{
    if (!u->closing)
        uv_timer_start(&u->retry_timer, on_retry, RETRY_MS, 0);
}

static void drop_bus(agent_units *u)
{
    job *j;

    while ((j = u->jobs)) {
        u->jobs = j->next;
        free(j);
    }
    memset(u->recent, 0, sizeof(u->recent));
    if (u->poll) {
        uv_poll_stop(u->poll);
        uv_close((uv_handle_t *)u->poll, on_poll_closed);
        u->poll = NULL;
    }
    uv_timer_stop(&u->bus_timer);
    if (u->bus) {
        sd_bus_close(u->bus);
        sd_bus_unref(u->bus); /* destroys the slots: their contexts are freed */
        u->bus = NULL;
    }
}

static void disconnect(agent_units *u, const char *why)
{
    bool was = u->connected;

    drop_bus(u);
    u->connected = false;
    if (strcmp(u->error, why) != 0 || was)
        log_warning("systemd: %s; retrying every %d s", why, RETRY_MS / 1000);
    snprintf(u->error, sizeof(u->error), "%s", why);
    schedule_retry(u);
    if (was && u->hooks.connected)
        u->hooks.connected(u->hooks.arg, false, why);
}

static int on_subscribed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    call_ctx *c = userdata;
    agent_units *u = c->u;
    char why[300];

    (void)ret_error;
    if (sd_bus_message_is_method_error(m, NULL)) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        snprintf(why, sizeof(why), "systemd is not reachable on the system bus (%s)",
                 e && e->message ? e->message : "Subscribe failed");
        /* not from inside sd_bus_process: leave through the timer */
        snprintf(u->error, sizeof(u->error), "%s", why);
        log_warning("systemd: %s; retrying every %d s", why, RETRY_MS / 1000);
        uv_timer_start(&u->retry_timer, on_retry, 0, 0);
        return 0;
    }
    u->connected = true;
    u->error[0] = '\0';
    log_info("systemd: connected to the system bus, following dpr-cachestore@ units");
    if (u->hooks.connected)
        u->hooks.connected(u->hooks.arg, true, "");
    return 0;
}

static int subscribe(agent_units *u)
{
    sd_bus_message *m = NULL;
    call_ctx *ctx;
    int rc;

    rc = sd_bus_message_new_method_call(u->bus, &m, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe");
    if (rc < 0)
        return rc;
    ctx = new_ctx(u, CALL_SUBSCRIBE, NULL, AGENT_UNIT_START);
    rc = ctx ? send_async(u, m, on_subscribed, ctx) : -ENOMEM;
    sd_bus_message_unref(m);
    return rc;
}

/* systemd re-executed or started again: subscribe again, re-read units. */
static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    agent_units *u = userdata;
    const char *name, *old_owner, *new_owner;

    (void)ret_error;
    if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
        strcmp(name, SD_DEST) != 0 || !*new_owner)
        return 0;
    log_info("systemd: %s has a new owner; subscribing again", SD_DEST);
    subscribe(u);
    return 0;
}

static int connect_bus(agent_units *u)
{
    int rc, fd;

    rc = sd_bus_open_system(&u->bus);
    if (rc < 0) {
        u->bus = NULL;
        return rc;
    }
    fd = sd_bus_get_fd(u->bus);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    u->poll = calloc(1, sizeof(*u->poll));
    if (!u->poll) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = uv_poll_init(u->loop, u->poll, fd);
    if (rc < 0) {
        free(u->poll);
        u->poll = NULL;
        goto fail;
    }
    u->poll->data = u;
    rc = sd_bus_match_signal_async(u->bus, NULL, SD_DEST, NULL,
                                   "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                   on_props_changed, NULL, u);
    if (rc >= 0)
        rc = sd_bus_match_signal_async(u->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER,
                                       "JobRemoved", on_job_removed, NULL, u);
    if (rc >= 0)
        rc = sd_bus_match_signal_async(u->bus, NULL, "org.freedesktop.DBus",
                                       "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "NameOwnerChanged", on_owner_changed, NULL, u);
    if (rc >= 0)
        rc = subscribe(u);
    if (rc < 0)
        goto fail;
    kick(u);
    return 0;
fail:
    drop_bus(u);
    return rc;
}

static void try_connect(agent_units *u)
{
    char why[300];
    int rc;

    if (u->bus || u->closing)
        return;
    rc = connect_bus(u);
    if (rc < 0) {
        snprintf(why, sizeof(why), "cannot connect to the system bus: %s", strerror(-rc));
        if (strcmp(u->error, why) != 0)
            log_warning("systemd: %s; retrying every %d s", why, RETRY_MS / 1000);
        snprintf(u->error, sizeof(u->error), "%s", why);
        schedule_retry(u);
    }
}

static void on_retry(uv_timer_t *t)
{
    agent_units *u = t->data;

    if (u->bus && !u->connected) {
        drop_bus(u); /* Subscribe failed on this connection: try again later */
        schedule_retry(u);
        return;
    }
    try_connect(u);
}

int agent_units_new(uv_loop_t *loop, const agent_units_hooks *hooks, agent_units **out)
{
    agent_units *u = calloc(1, sizeof(*u));

    if (!u)
        return -ENOMEM;
    u->loop = loop;
    u->hooks = *hooks;
    snprintf(u->error, sizeof(u->error), "connecting to the system bus");
    uv_timer_init(loop, &u->bus_timer);
    uv_timer_init(loop, &u->retry_timer);
    uv_idle_init(loop, &u->kick);
    u->bus_timer.data = u->retry_timer.data = u->kick.data = u;
    u->open_handles = 3;
    try_connect(u);
    *out = u;
    return 0;
}

bool agent_units_connected(const agent_units *u)
{
    return u && u->connected;
}

const char *agent_units_error(const agent_units *u)
{
    if (!u)
        return "the agent is stopping";
    return u->connected ? "" : u->error;
}

void agent_units_close(agent_units *u)
{
    if (!u || u->closing)
        return;
    u->closing = true;
    if (u->bus)
        sd_bus_flush(u->bus);
    drop_bus(u);
    u->connected = false;
    uv_close((uv_handle_t *)&u->bus_timer, on_handle_closed);
    uv_close((uv_handle_t *)&u->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&u->kick, on_handle_closed);
}
