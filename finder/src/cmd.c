/* cmd.c - the finder's RESP commands (see cmd.h, docs/protocol.md). */
#include "cmd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reply writer with a sticky error: append freely, check once. */
typedef struct writer {
    dpr_buf *b;
    int rc;
} writer;

static void w_raw(writer *w, const void *p, size_t n)
{
    if (w->rc == 0)
        w->rc = dpr_buf_append(w->b, p, n);
}

static void w_str(writer *w, const char *s)
{
    w_raw(w, s, strlen(s));
}

static void w_u64(writer *w, uint64_t v)
{
    if (w->rc == 0)
        w->rc = dpr_buf_append_u64(w->b, v);
}

static void w_int(writer *w, uint64_t v)
{
    w_raw(w, ":", 1);
    w_u64(w, v);
    w_raw(w, "\r\n", 2);
}

static void w_array(writer *w, uint64_t n)
{
    w_raw(w, "*", 1);
    w_u64(w, n);
    w_raw(w, "\r\n", 2);
}

static void w_bulk(writer *w, const char *p, size_t n)
{
    w_raw(w, "$", 1);
    w_u64(w, n);
    w_raw(w, "\r\n", 2);
    w_raw(w, p, n);
    w_raw(w, "\r\n", 2);
}

/* An error line; CR and LF would break the framing, so they become spaces. */
static void w_error(writer *w, const char *msg)
{
    size_t n = strlen(msg);

    if (w->rc == 0)
        w->rc = dpr_buf_reserve(w->b, n + 3);
    if (w->rc < 0)
        return;
    w_raw(w, "-", 1);
    for (size_t i = 0; i < n; i++) {
        char c = msg[i] == '\r' || msg[i] == '\n' ? ' ' : msg[i];
        w_raw(w, &c, 1);
    }
    w_raw(w, "\r\n", 2);
}

int dpr_cmd_error(dpr_buf *out, const char *msg)
{
    size_t saved = out->len;
    writer w = { out, 0 };

    w_error(&w, msg);
    if (w.rc < 0)
        out->len = saved;
    return w.rc;
}

/* A short printable rendering of a client-supplied argument. */
static void show_arg(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t o = 0, max = dstlen - 4;

    for (size_t i = 0; i < n && o < max; i++)
        dst[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (n > o && o == max) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/*
 * Decimal text in 0..INT64_MAX (replies use RESP integers, which are
 * signed 64-bit): ASCII digits only (leading zeros allowed), no sign, no
 * spaces, not empty.
 */
static int parse_num(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return -EINVAL;
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

typedef struct cmd_ctx {
    dpr_finder *f;
    int argc;
    char *const *argv;
    const size_t *argvlen;
    writer *w;
    unsigned *flags;
} cmd_ctx;

/* Parses argument i as a number; on failure writes the error reply. */
static int arg_num(cmd_ctx *c, int i, const char *what, uint64_t *out)
{
    char shown[48], msg[160];

    if (parse_num(c->argv[i], c->argvlen[i], out) == 0)
        return 0;
    show_arg(shown, sizeof(shown), c->argv[i], c->argvlen[i]);
    snprintf(msg, sizeof(msg),
             "ERR invalid %s '%s': expected a decimal integer in 0..9223372036854775807",
             what, shown);
    w_error(c->w, msg);
    return -EINVAL;
}

/* The reply depends on the working state whenever that is ahead of the
 * published one. */
static void wait_if_dirty(cmd_ctx *c)
{
    if (dpr_finder_dirty(c->f))
        *c->flags |= DPR_CMD_WAIT;
}

static void core_error(cmd_ctx *c, int rc, const char *what)
{
    char msg[200];

    if (rc == -ENOMEM)
        snprintf(msg, sizeof(msg), "ERR out of memory");
    else
        snprintf(msg, sizeof(msg), "ERR %s: %s", what, strerror(-rc));
    w_error(c->w, msg);
}

static void cmd_worker_add(cmd_ctx *c)
{
    uint64_t worker, wl = 0, restore = 0;
    char msg[120];
    int rc;

    if (arg_num(c, 1, "worker id", &worker) < 0)
        return;
    rc = dpr_finder_add_worker(c->f, worker, &wl, &restore);
    wait_if_dirty(c);
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "cannot add worker %llu", (unsigned long long)worker);
        core_error(c, rc, msg);
        return;
    }
    w_array(c->w, 2);
    w_int(c->w, wl);
    w_int(c->w, restore);
}

static void cmd_worker_remove(cmd_ctx *c)
{
    uint64_t worker;
    char msg[200];
    int rc;

    if (arg_num(c, 1, "worker id", &worker) < 0)
        return;
    rc = dpr_finder_remove_worker(c->f, worker);
    wait_if_dirty(c);
    if (rc == -ENOENT) {
        snprintf(msg, sizeof(msg), "ERR unknown worker %llu", (unsigned long long)worker);
        w_error(c->w, msg);
    } else if (rc == -EBUSY) {
        snprintf(msg, sizeof(msg),
                 "ERR worker %llu has reported checkpoints that are not in the cut yet: "
                 "remove it once its last checkpoint is committed",
                 (unsigned long long)worker);
        w_error(c->w, msg);
    } else if (rc < 0) {
        snprintf(msg, sizeof(msg), "cannot remove worker %llu", (unsigned long long)worker);
        core_error(c, rc, msg);
    } else {
        w_str(c->w, "+OK\r\n");
    }
}

/* The world-line of the working state (what a held reply will be released
 * under); falls back to the published one. */
static uint64_t working_world_line(const dpr_finder *f)
{
    dpr_finder_state st;
    uint64_t wl;

    if (dpr_finder_get_state(f, &st) < 0)
        return dpr_finder_world_line(f);
    wl = st.world_line;
    dpr_finder_state_free(&st);
    return wl;
}

static void cmd_report(cmd_ctx *c)
{
    uint64_t wl, worker, version;
    size_t ndeps = (size_t)(c->argc - 4) / 2;
    dpr_dep small[8], *deps = small;
    char msg[240];
    int rc;

    if ((c->argc - 4) % 2 != 0) {
        w_error(c->w, "ERR wrong number of arguments for 'DPR.REPORT': dependencies come "
                      "in <dep-worker> <dep-version> pairs");
        return;
    }
    if (arg_num(c, 1, "world-line", &wl) < 0 || arg_num(c, 2, "worker id", &worker) < 0 ||
        arg_num(c, 3, "version", &version) < 0)
        return;
    if (wl == 0) {
        w_error(c->w, "ERR invalid world-line 0: world-lines start at 1");
        return;
    }
    if (version == 0) {
        w_error(c->w, "ERR invalid version 0: versions start at 1");
        return;
    }
    if (ndeps > sizeof(small) / sizeof(small[0])) {
        deps = malloc(ndeps * sizeof(*deps));
        if (!deps) {
            w_error(c->w, "ERR out of memory");
            return;
        }
    }
    for (size_t i = 0; i < ndeps; i++) {
        int a = 4 + 2 * (int)i;
        if (arg_num(c, a, "dependency worker id", &deps[i].worker) < 0 ||
            arg_num(c, a + 1, "dependency version", &deps[i].version) < 0)
            goto out;
        if (deps[i].version > version) {
            snprintf(msg, sizeof(msg),
                     "ERR dependency (%llu, %llu) is newer than version %llu: "
                     "dependencies never point forward",
                     (unsigned long long)deps[i].worker,
                     (unsigned long long)deps[i].version, (unsigned long long)version);
            w_error(c->w, msg);
            goto out;
        }
    }
    rc = dpr_finder_report(c->f, wl, worker, version, deps, ndeps);
    wait_if_dirty(c);
    switch (rc) {
    case 0:
        w_str(c->w, "+OK\r\n");
        break;
    case -ESTALE:
        snprintf(msg, sizeof(msg),
                 "STALE world-line %llu is current: report of version %llu from world-line "
                 "%llu dropped",
                 (unsigned long long)working_world_line(c->f), (unsigned long long)version,
                 (unsigned long long)wl);
        /* the message shows the working world-line: hold it like the rest */
        *c->flags |= DPR_CMD_WAIT;
        w_error(c->w, msg);
        break;
    case -ENOENT:
        snprintf(msg, sizeof(msg), "ERR unknown worker %llu: register it with DPR.WORKER.ADD",
                 (unsigned long long)worker);
        w_error(c->w, msg);
        break;
    case -EINVAL: {
        uint64_t cur = working_world_line(c->f);
        if (wl > cur)
            snprintf(msg, sizeof(msg),
                     "ERR world-line %llu is newer than the finder's (%llu)",
                     (unsigned long long)wl, (unsigned long long)cur);
        else
            snprintf(msg, sizeof(msg), "ERR report of version %llu refused as inconsistent",
                     (unsigned long long)version);
        *c->flags |= DPR_CMD_WAIT;
        w_error(c->w, msg);
        break;
    }
    default:
        core_error(c, rc, "report refused");
        break;
    }
out:
    if (deps != small)
        free(deps);
}

static int dep_cmp(const void *a, const void *b)
{
    const dpr_dep *x = a, *y = b;

    return x->worker < y->worker ? -1 : x->worker > y->worker;
}

static void write_cut(writer *w, const dpr_dep *cut, size_t n)
{
    w_array(w, 2 * (uint64_t)n);
    for (size_t i = 0; i < n; i++) {
        w_int(w, cut[i].worker);
        w_int(w, cut[i].version);
    }
}

static void write_sync(writer *w, uint64_t wl, uint64_t maxv, const dpr_dep *cut, size_t n)
{
    w_array(w, 3);
    w_int(w, wl);
    w_int(w, maxv);
    write_cut(w, cut, n);
}

/*
 * When the working state is ahead of the published one (requests of this
 * round changed it, maybe this client's own), answer from the working state
 * and hold the reply until that state is durable: a client that pipelines
 * REPORT then SYNC sees its report, and still nobody sees a state that is
 * not durable. Otherwise answer from the published state.
 */
static void cmd_sync(cmd_ctx *c)
{
    dpr_finder_state st = { .workers = NULL };
    dpr_dep *all = NULL, d;
    size_t n = 0, it = 0;
    uint64_t wl, maxv = 0;

    if (dpr_finder_dirty(c->f)) {
        if (dpr_finder_get_state(c->f, &st) < 0)
            goto nomem;
        if (st.nworkers > 0 && !(all = malloc(st.nworkers * sizeof(*all))))
            goto nomem;
        for (size_t i = 0; i < st.nworkers; i++) {
            if (st.workers[i].durable > maxv)
                maxv = st.workers[i].durable;
            if (st.workers[i].cut > 0) { /* sorted by id already */
                all[n].worker = st.workers[i].worker;
                all[n++].version = st.workers[i].cut;
            }
        }
        wl = st.world_line;
        *c->flags |= DPR_CMD_WAIT;
    } else {
        const dpr_depset *cut = dpr_finder_cut(c->f);
        size_t count = dpr_depset_count(cut);
        if (count > 0 && !(all = malloc(count * sizeof(*all))))
            goto nomem;
        while (n < count && dpr_depset_next(cut, &it, &d))
            all[n++] = d;
        if (n > 1)
            qsort(all, n, sizeof(*all), dep_cmp);
        wl = dpr_finder_world_line(c->f);
        maxv = dpr_finder_max_version(c->f);
    }
    write_sync(c->w, wl, maxv, all, n);
    goto out;
nomem:
    w_error(c->w, "ERR out of memory");
out:
    free(all);
    dpr_finder_state_free(&st);
}

/*
 * DPR.PREFIX <world-line>: the surviving prefix (the cut everybody rolled
 * back to) of a world-line that ended. Like DPR.SYNC it answers from the
 * working state, held until durable, when that is ahead of the published
 * one.
 */
static void cmd_prefix(cmd_ctx *c)
{
    dpr_finder_state st = { .workers = NULL };
    const dpr_dep *cut = NULL;
    uint64_t wl, current;
    size_t n = 0;
    char msg[160];
    int rc = -ENOENT;

    if (arg_num(c, 1, "world-line", &wl) < 0)
        return;
    if (dpr_finder_dirty(c->f)) {
        if (dpr_finder_get_state(c->f, &st) < 0) {
            w_error(c->w, "ERR out of memory");
            return;
        }
        *c->flags |= DPR_CMD_WAIT;
        current = st.world_line;
        for (size_t i = 0; i < st.nprefixes; i++) {
            if (st.prefixes[i].world_line == wl) {
                cut = st.prefixes[i].cut;
                n = st.prefixes[i].n;
                rc = 0;
            }
        }
        if (rc < 0 && wl >= DPR_FINDER_FIRST_WORLD_LINE && wl < current)
            rc = -ESRCH;
    } else {
        current = dpr_finder_world_line(c->f);
        rc = dpr_finder_prefix_cut(c->f, wl, &cut, &n);
    }
    if (rc == 0) {
        write_cut(c->w, cut, n);
    } else if (rc == -ESRCH) {
        snprintf(msg, sizeof(msg),
                 "ERR world-line %llu ended too long ago: its prefix is forgotten",
                 (unsigned long long)wl);
        w_error(c->w, msg);
    } else {
        snprintf(msg, sizeof(msg),
                 "ERR world-line %llu has not ended (current world-line %llu)",
                 (unsigned long long)wl, (unsigned long long)current);
        w_error(c->w, msg);
    }
    dpr_finder_state_free(&st);
}

static void cmd_ping(cmd_ctx *c)
{
    if (c->argc == 2)
        w_bulk(c->w, c->argv[1], c->argvlen[1]);
    else
        w_str(c->w, "+PONG\r\n");
}

static void cmd_command(cmd_ctx *c)
{
    (void)c;
    w_str(c->w, "*0\r\n"); /* enough for redis-cli's start-up query */
}

static void cmd_quit(cmd_ctx *c)
{
    *c->flags |= DPR_CMD_CLOSE;
    w_str(c->w, "+OK\r\n");
}

typedef struct cmd_def {
    const char *name;
    int min_args; /* including the name */
    int max_args; /* -1: unbounded */
    void (*run)(cmd_ctx *c);
} cmd_def;

static const cmd_def commands[] = {
    { "DPR.REPORT", 4, -1, cmd_report },
    { "DPR.SYNC", 1, 1, cmd_sync },
    { "DPR.PREFIX", 2, 2, cmd_prefix },
    { "DPR.WORKER.ADD", 2, 2, cmd_worker_add },
    { "DPR.WORKER.REMOVE", 2, 2, cmd_worker_remove },
    { "PING", 1, 2, cmd_ping },
    { "COMMAND", 1, -1, cmd_command },
    { "QUIT", 1, -1, cmd_quit },
};

int dpr_cmd_execute(dpr_finder *f, int argc, char *const *argv, const size_t *argvlen,
                    dpr_buf *out, unsigned *flags)
{
    size_t saved = out->len;
    writer w = { out, 0 };
    cmd_ctx c = { f, argc, argv, argvlen, &w, flags };
    const cmd_def *def = NULL;
    char shown[48], msg[160];

    *flags = 0;
    if (argc < 1) {
        w_error(&w, "ERR empty command");
        goto done;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (argvlen[0] == strlen(commands[i].name) &&
            strncasecmp(argv[0], commands[i].name, argvlen[0]) == 0) {
            def = &commands[i];
            break;
        }
    }
    if (!def) {
        show_arg(shown, sizeof(shown), argv[0], argvlen[0]);
        snprintf(msg, sizeof(msg), "ERR unknown command '%s'", shown);
        w_error(&w, msg);
        goto done;
    }
    if (argc < def->min_args || (def->max_args >= 0 && argc > def->max_args)) {
        snprintf(msg, sizeof(msg), "ERR wrong number of arguments for '%s'", def->name);
        w_error(&w, msg);
        goto done;
    }
    def->run(&c);
done:
    if (w.rc < 0) {
        out->len = saved;
        *flags &= ~DPR_CMD_CLOSE;
        return w.rc;
    }
    return 0;
}
