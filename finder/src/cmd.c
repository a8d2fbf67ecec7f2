/* cmd.c - the finder's RESP commands (see cmd.h, docs/protocol.md). */
#include "cmd.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/num.h"
#include "common/resp.h"

/* Replies are written with common/resp.h into the caller's buffer; its
 * sticky failure flag is checked once per command (finish_reply). */

/* A reply that ran out of memory is taken back: out as it was before. */
static int finish_reply(dpr_buf *out, size_t saved)
{
    if (!dpr_buf_failed(out))
        return 0;
    out->len = saved;
    out->failed = false;
    return -ENOMEM;
}

int dpr_cmd_error(dpr_buf *out, const char *msg)
{
    size_t saved = out->len;

    assert(!dpr_buf_failed(out)); /* a failed reply was taken back */
    dpr_resp_error(out, msg);
    return finish_reply(out, saved);
}

/* A short printable rendering of a client-supplied argument. */
void dpr_cmd_show_arg(char *dst, size_t dstlen, const char *s, size_t n)
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
 * signed 64-bit): ASCII digits only, no sign, no spaces, not empty. Unlike
 * num.h, leading zeros are allowed ("007"): clients have always sent them.
 */
static int parse_num(const char *s, size_t n, uint64_t *out)
{
    while (n > 1 && s[0] == '0') {
        s++;
        n--;
    }
    return dpr_parse_u64(s, n, 0, INT64_MAX, out);
}

/* ---- connections: their grants ------------------------------------------ */

/* A connection may act for worker of domain while token is the record's. */
typedef struct cmd_grant {
    char domain[DPR_DOMAIN_MAX + 1];
    uint64_t worker;
    size_t token_len;
    char token[DPR_FINDER_TOKEN_MAX];
} cmd_grant;

struct dpr_cmd_conn {
    cmd_grant *grants;
    size_t n, cap; /* n <= cap <= DPR_CMD_MAX_GRANTS */
};

int dpr_cmd_conn_new(dpr_cmd_conn **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void dpr_cmd_conn_free(dpr_cmd_conn *c)
{
    if (!c)
        return;
    if (c->grants)
        explicit_bzero(c->grants, c->cap * sizeof(*c->grants)); /* the owners' secrets */
    free(c->grants);
    free(c);
}

size_t dpr_cmd_conn_grants(const dpr_cmd_conn *c)
{
    return c ? c->n : 0;
}

static cmd_grant *grant_find(dpr_cmd_conn *c, const char *domain, uint64_t worker)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (c->grants[i].worker == worker && strcmp(c->grants[i].domain, domain) == 0)
            return &c->grants[i];
    return NULL;
}

/* Grants c (domain, worker) with token[0..len) (valid), replacing the
 * token of a grant it holds for them. -ENOSPC beyond DPR_CMD_MAX_GRANTS,
 * -ENOMEM; c unchanged on failure. */
static int grant_add(dpr_cmd_conn *c, const char *domain, uint64_t worker, const char *token,
                     size_t len)
{
    cmd_grant *g = grant_find(c, domain, worker);

    assert(len >= 1 && len <= DPR_FINDER_TOKEN_MAX); /* validated by the caller */
    if (!g) {
        if (c->n == DPR_CMD_MAX_GRANTS)
            return -ENOSPC;
        if (c->n == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 4;
            if (cap > DPR_CMD_MAX_GRANTS)
                cap = DPR_CMD_MAX_GRANTS;
            /* not realloc: the old block's tokens are wiped before it goes */
            cmd_grant *p = calloc(cap, sizeof(*p));
            if (!p)
                return -ENOMEM;
            if (c->n)
                memcpy(p, c->grants, c->n * sizeof(*p));
            if (c->grants)
                explicit_bzero(c->grants, c->cap * sizeof(*c->grants));
            free(c->grants);
            c->grants = p;
            c->cap = cap;
        }
        g = &c->grants[c->n++];
        snprintf(g->domain, sizeof(g->domain), "%s", domain);
        g->worker = worker;
    }
    assert(c->n <= c->cap && c->cap <= DPR_CMD_MAX_GRANTS);
    memset(g->token, 0, sizeof(g->token));
    memcpy(g->token, token, len);
    g->token_len = len;
    return 0;
}

/* ---- commands ------------------------------------------------------------- */

typedef struct cmd_ctx {
    dpr_domains *ds;
    dpr_cmd_conn *conn;   /* NULL: no grants */
    dpr_finder *f;        /* the domain's core (NULL for DPR.WORKER.ADD until it runs) */
    char domain[DPR_DOMAIN_MAX + 1]; /* argv[1] of a command that names a domain */
    int argc;
    char *const *argv;
    const size_t *argvlen;
    dpr_buf *out;
    unsigned *flags;
} cmd_ctx;

/* Parses argument i as a number; on failure writes the error reply. */
static int arg_num(cmd_ctx *c, int i, const char *what, uint64_t *out)
{
    char shown[48];

    if (parse_num(c->argv[i], c->argvlen[i], out) == 0)
        return 0;
    dpr_cmd_show_arg(shown, sizeof(shown), c->argv[i], c->argvlen[i]);
    dpr_resp_errorf(c->out,
                    "ERR invalid %s '%s': expected a decimal integer in 0..9223372036854775807",
                    what, shown);
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
    if (rc == -ENOMEM)
        dpr_resp_error(c->out, "ERR out of memory");
    else
        dpr_resp_errorf(c->out, "ERR %s: %s", what, strerror(-rc));
}

/*
 * The token argument i of DPR.WORKER.ADD / REMOVE (optional: absent is
 * NULL, 0) and DPR.AUTH. On failure writes the error reply, which never
 * shows the token.
 */
static int arg_token(cmd_ctx *c, int i, const char **token, size_t *len)
{
    *token = NULL;
    *len = 0;
    if (c->argc <= i)
        return 0;
    if (!dpr_finder_token_valid(c->argv[i], c->argvlen[i])) {
        dpr_resp_errorf(c->out, "ERR invalid token: expected 1 to %d visible ASCII characters "
                        "(no spaces or control characters)", DPR_FINDER_TOKEN_MAX);
        return -EINVAL;
    }
    *token = c->argv[i];
    *len = c->argvlen[i];
    return 0;
}

/* A registered worker's owner token was not presented. */
static void token_refused(cmd_ctx *c, uint64_t worker, const char *command)
{
    *c->flags |= DPR_CMD_DENIED;
    dpr_resp_errorf(c->out, "ERR worker %llu is registered by its owner: %s needs its token",
                    (unsigned long long)worker, command);
}

static void cmd_worker_add(cmd_ctx *c)
{
    uint64_t worker, wl = 0, restore = 0;
    const char *token;
    size_t token_len;
    char what[64];
    int rc;

    if (arg_num(c, 2, "worker id", &worker) < 0 || arg_token(c, 3, &token, &token_len) < 0)
        return;
    /* the domain comes into being with its first worker */
    rc = dpr_domains_ensure(c->ds, c->domain, &c->f);
    if (rc < 0) {
        core_error(c, rc, "cannot create the domain");
        return;
    }
    rc = dpr_finder_add_worker_token(c->f, worker, token, token_len, &wl, &restore);
    wait_if_dirty(c);
    if (rc == -EACCES) {
        token_refused(c, worker, "DPR.WORKER.ADD");
        return;
    }
    if (rc < 0) {
        snprintf(what, sizeof(what), "cannot add worker %llu", (unsigned long long)worker);
        core_error(c, rc, what);
        return;
    }
    /* the owner registered it here: this connection acts for it. Best
     * effort: the worker is registered whatever happens to the grant, and
     * without room for it (or memory) DPR.AUTH says why */
    if (token_len > 0 && c->conn)
        (void)grant_add(c->conn, c->domain, worker, token, token_len);
    dpr_resp_array(c->out, 2);
    dpr_resp_uint(c->out, wl);
    dpr_resp_uint(c->out, restore);
}

/* The reply to DPR.WORKER.REMOVE / LEAVE, which need every checkpoint of
 * the worker in the cut (rc: the core's answer; then: what the worker may
 * do once it is; what: the context of other errors). */
static void settled_reply(cmd_ctx *c, int rc, uint64_t worker, const char *command,
                          const char *then, const char *what)
{
    wait_if_dirty(c);
    if (rc == -EACCES)
        token_refused(c, worker, command);
    else if (rc == -ENOENT)
        dpr_resp_errorf(c->out, "ERR unknown worker %llu", (unsigned long long)worker);
    else if (rc == -EBUSY)
        dpr_resp_errorf(c->out,
                        "ERR worker %llu has reported checkpoints that are not in the cut yet: "
                        "%s once its last checkpoint is committed",
                        (unsigned long long)worker, then);
    else if (rc < 0)
        core_error(c, rc, what);
    else
        dpr_resp_status(c->out, "OK");
}

static void cmd_worker_remove(cmd_ctx *c)
{
    uint64_t worker;
    const char *token;
    size_t token_len;
    char what[64];
    int rc;

    if (arg_num(c, 2, "worker id", &worker) < 0 || arg_token(c, 3, &token, &token_len) < 0)
        return;
    rc = dpr_finder_remove_worker_token(c->f, worker, token, token_len);
    snprintf(what, sizeof(what), "cannot remove worker %llu", (unsigned long long)worker);
    settled_reply(c, rc, worker, "DPR.WORKER.REMOVE", "remove it", what);
}

/*
 * DPR.WORKER.LEAVE <domain> <worker> [<token>]: a planned stop. Without a
 * token argument the connection's grant for the worker stands for it (the
 * shard authenticated this connection with DPR.AUTH or its DPR.WORKER.ADD).
 */
static void cmd_worker_leave(cmd_ctx *c)
{
    uint64_t worker;
    const char *token;
    size_t token_len;
    const cmd_grant *g;
    char what[64];
    int rc;

    if (arg_num(c, 2, "worker id", &worker) < 0 || arg_token(c, 3, &token, &token_len) < 0)
        return;
    if (token_len == 0 && (g = grant_find(c->conn, c->domain, worker)) != NULL) {
        token = g->token;
        token_len = g->token_len;
    }
    rc = dpr_finder_leave_worker(c->f, worker, token, token_len);
    snprintf(what, sizeof(what), "cannot let worker %llu leave", (unsigned long long)worker);
    settled_reply(c, rc, worker, "DPR.WORKER.LEAVE", "it may leave", what);
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

/*
 * DPR.AUTH <domain> <worker> <token>: the connection acts for worker's
 * owner from now on, while token stays the record's. Reads the working
 * state: the answer waits for it when that is ahead of the published one
 * (a token changed in this round is not durable yet).
 */
static void cmd_auth(cmd_ctx *c)
{
    uint64_t worker;
    const char *token;
    size_t token_len;
    char what[64];
    int rc;

    if (arg_num(c, 2, "worker id", &worker) < 0 || arg_token(c, 3, &token, &token_len) < 0)
        return;
    assert(token_len > 0); /* the arity makes it present */
    rc = dpr_finder_token_check(c->f, worker, token, token_len);
    wait_if_dirty(c);
    if (rc == -ENOENT) {
        dpr_resp_errorf(c->out, "ERR unknown worker %llu", (unsigned long long)worker);
        return;
    }
    if (rc == -EACCES) {
        bool none = dpr_finder_token_check(c->f, worker, NULL, 0) == 0;
        *c->flags |= DPR_CMD_DENIED;
        dpr_resp_errorf(c->out,
                        "FENCED worker %llu is registered %s: this connection may not act for "
                        "it (its owner moved it, or another incarnation registered it)",
                        (unsigned long long)worker,
                        none ? "without a token" : "with another token");
        return;
    }
    if (rc < 0) {
        snprintf(what, sizeof(what), "cannot check worker %llu", (unsigned long long)worker);
        core_error(c, rc, what);
        return;
    }
    if (!c->conn) {
        dpr_resp_error(c->out, "ERR this connection cannot hold DPR.AUTH grants");
        return;
    }
    rc = grant_add(c->conn, c->domain, worker, token, token_len);
    if (rc == -ENOSPC)
        dpr_resp_errorf(c->out, "ERR too many DPR.AUTH grants on this connection (at most %d)",
                        DPR_CMD_MAX_GRANTS);
    else if (rc < 0)
        dpr_resp_error(c->out, "ERR out of memory");
    else
        dpr_resp_status(c->out, "OK");
}

/*
 * May this connection report for worker? A worker registered with a token
 * reports only through a grant whose token is still the record's (looked
 * at every time: the owner may have moved the worker since). 0, or -1 with
 * the refusal written (it never shows a token and changes nothing). A
 * worker that is not registered passes: the core answers for it.
 */
static int report_allowed(cmd_ctx *c, uint64_t worker)
{
    const cmd_grant *g;

    if (dpr_finder_token_check(c->f, worker, NULL, 0) != -EACCES)
        return 0; /* registered without a token (as before tokens), or not at all */
    g = grant_find(c->conn, c->domain, worker);
    if (g && dpr_finder_token_check(c->f, worker, g->token, g->token_len) == 0)
        return 0;
    wait_if_dirty(c);
    *c->flags |= DPR_CMD_DENIED;
    if (!g)
        dpr_resp_errorf(c->out, "ERR worker %llu is registered by its owner: DPR.REPORT needs "
                        "DPR.AUTH with its token on this connection",
                        (unsigned long long)worker);
    else
        dpr_resp_errorf(c->out, "FENCED worker %llu now belongs to another owner (it moved): "
                        "this incarnation's reports are refused",
                        (unsigned long long)worker);
    return -1;
}

static void cmd_report(cmd_ctx *c)
{
    uint64_t wl, worker, version;
    size_t ndeps = (size_t)(c->argc - 5) / 2;
    dpr_dep small[8], *deps = small;
    int rc;

    if ((c->argc - 5) % 2 != 0) {
        dpr_resp_error(c->out, "ERR wrong number of arguments for 'DPR.REPORT': dependencies "
                               "come in <dep-worker> <dep-version> pairs");
        return;
    }
    if (arg_num(c, 2, "world-line", &wl) < 0 || arg_num(c, 3, "worker id", &worker) < 0 ||
        arg_num(c, 4, "version", &version) < 0)
        return;
    if (wl == 0) {
        dpr_resp_error(c->out, "ERR invalid world-line 0: world-lines start at 1");
        return;
    }
    if (version == 0) {
        dpr_resp_error(c->out, "ERR invalid version 0: versions start at 1");
        return;
    }
    if (report_allowed(c, worker) < 0)
        return;
    if (ndeps > sizeof(small) / sizeof(small[0])) {
        deps = malloc(ndeps * sizeof(*deps));
        if (!deps) {
            dpr_resp_error(c->out, "ERR out of memory");
            return;
        }
    }
    for (size_t i = 0; i < ndeps; i++) {
        int a = 5 + 2 * (int)i;
        if (arg_num(c, a, "dependency worker id", &deps[i].worker) < 0 ||
            arg_num(c, a + 1, "dependency version", &deps[i].version) < 0)
            goto out;
        if (deps[i].version > version) {
            dpr_resp_errorf(c->out,
                            "ERR dependency (%llu, %llu) is newer than version %llu: "
                            "dependencies never point forward",
                            (unsigned long long)deps[i].worker,
                            (unsigned long long)deps[i].version, (unsigned long long)version);
            goto out;
        }
    }
    rc = dpr_finder_report(c->f, wl, worker, version, deps, ndeps);
    wait_if_dirty(c);
    switch (rc) {
    case 0:
        dpr_resp_status(c->out, "OK");
        break;
    case -ESTALE:
        /* the message shows the working world-line: hold it like the rest */
        *c->flags |= DPR_CMD_WAIT;
        dpr_resp_errorf(c->out,
                        "STALE world-line %llu is current: report of version %llu from "
                        "world-line %llu dropped",
                        (unsigned long long)working_world_line(c->f),
                        (unsigned long long)version, (unsigned long long)wl);
        break;
    case -ENOENT:
        dpr_resp_errorf(c->out, "ERR unknown worker %llu: register it with DPR.WORKER.ADD",
                        (unsigned long long)worker);
        break;
    case -EPERM:
        dpr_resp_errorf(c->out,
                        "ERR worker %llu left (DPR.WORKER.LEAVE): report of version %llu "
                        "refused until it is added again", (unsigned long long)worker,
                        (unsigned long long)version);
        break;
    case -ENXIO: {
        size_t i = 0;
        while (i < ndeps && (deps[i].version == 0 || deps[i].worker == worker ||
                             dpr_finder_knows_worker(c->f, deps[i].worker)))
            i++;
        assert(i < ndeps); /* the core refused one of them */
        if (i == ndeps) { /* never: still, every request gets a reply */
            core_error(c, rc, "report refused");
            break;
        }
        /* a worker of another domain is as unknown as one that never was */
        dpr_resp_errorf(c->out,
                        "ERR dependency (%llu, %llu) is on worker %llu, which domain '%s' "
                        "never registered: report of version %llu refused",
                        (unsigned long long)deps[i].worker, (unsigned long long)deps[i].version,
                        (unsigned long long)deps[i].worker, c->domain,
                        (unsigned long long)version);
        break;
    }
    case -EINVAL: {
        uint64_t cur = working_world_line(c->f);
        if (wl > cur)
            dpr_resp_errorf(c->out, "ERR world-line %llu is newer than the finder's (%llu)",
                            (unsigned long long)wl, (unsigned long long)cur);
        else
            dpr_resp_errorf(c->out, "ERR report of version %llu refused as inconsistent",
                            (unsigned long long)version);
        *c->flags |= DPR_CMD_WAIT;
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

static void write_cut(dpr_buf *out, const dpr_dep *cut, size_t n)
{
    dpr_resp_array(out, 2 * n);
    for (size_t i = 0; i < n; i++) {
        dpr_resp_uint(out, cut[i].worker);
        dpr_resp_uint(out, cut[i].version);
    }
}

/*
 * Every registered worker with its cut (0: nothing committed yet), so that a
 * shard can tell a worker that registered a moment ago from one that does
 * not exist. When the working state is ahead of the published one (requests
 * of this round changed it, maybe this client's own), the answer is held
 * until that state is durable: a client that pipelines REPORT then SYNC sees
 * its report, and still nobody sees a state that is not durable. Otherwise
 * the working state is the published one.
 */
static void cmd_sync(cmd_ctx *c)
{
    dpr_dep *all = NULL;
    size_t n = 0;
    uint64_t wl, maxv;

    if (dpr_finder_sync_view(c->f, &wl, &maxv, &all, &n) < 0) {
        dpr_resp_error(c->out, "ERR out of memory");
        return;
    }
    wait_if_dirty(c);
    dpr_resp_array(c->out, 3);
    dpr_resp_uint(c->out, wl);
    dpr_resp_uint(c->out, maxv);
    write_cut(c->out, all, n);
    free(all);
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
    int rc = -ENOENT;

    if (arg_num(c, 2, "world-line", &wl) < 0)
        return;
    if (dpr_finder_dirty(c->f)) {
        if (dpr_finder_get_state(c->f, &st) < 0) {
            dpr_resp_error(c->out, "ERR out of memory");
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
    if (rc == 0)
        write_cut(c->out, cut, n);
    else if (rc == -ESRCH)
        dpr_resp_errorf(c->out, "ERR world-line %llu ended too long ago: its prefix is forgotten",
                        (unsigned long long)wl);
    else
        dpr_resp_errorf(c->out, "ERR world-line %llu has not ended (current world-line %llu)",
                        (unsigned long long)wl, (unsigned long long)current);
    dpr_finder_state_free(&st);
}

/*
 * DPR.DOMAINS: the names of every domain, sorted. From the working state;
 * held until durable when anything is ahead of the published state (a
 * domain made by a DPR.WORKER.ADD of this round is not known before).
 */
static void cmd_domains(cmd_ctx *c)
{
    size_t n = dpr_domains_count(c->ds);

    if (dpr_domains_dirty(c->ds))
        *c->flags |= DPR_CMD_WAIT;
    dpr_resp_array(c->out, n);
    for (size_t i = 0; i < n; i++)
        dpr_resp_bulk_str(c->out, dpr_domains_name(c->ds, i));
}

static void cmd_ping(cmd_ctx *c)
{
    if (c->argc == 2)
        dpr_resp_bulk(c->out, c->argv[1], c->argvlen[1]);
    else
        dpr_resp_status(c->out, "PONG");
}

static void cmd_command(cmd_ctx *c)
{
    dpr_resp_array(c->out, 0); /* enough for redis-cli's start-up query */
}

static void cmd_quit(cmd_ctx *c)
{
    *c->flags |= DPR_CMD_CLOSE;
    dpr_resp_status(c->out, "OK");
}

/* What a command does with its first argument, the domain. */
enum {
    NO_DOMAIN,     /* takes none */
    DOMAIN_EXISTS, /* names a domain that must exist */
    DOMAIN_ANY,    /* names a valid domain, made if missing (DPR.WORKER.ADD) */
};

typedef struct cmd_def {
    const char *name;
    int min_args; /* including the name */
    int max_args; /* -1: unbounded */
    int domain;
    void (*run)(cmd_ctx *c);
} cmd_def;

static const cmd_def commands[] = {
    { "DPR.REPORT", 5, -1, DOMAIN_EXISTS, cmd_report },
    { "DPR.SYNC", 2, 2, DOMAIN_EXISTS, cmd_sync },
    { "DPR.PREFIX", 3, 3, DOMAIN_EXISTS, cmd_prefix },
    { "DPR.WORKER.ADD", 3, 4, DOMAIN_ANY, cmd_worker_add },
    { "DPR.WORKER.REMOVE", 3, 4, DOMAIN_EXISTS, cmd_worker_remove },
    { "DPR.WORKER.LEAVE", 3, 4, DOMAIN_EXISTS, cmd_worker_leave },
    { "DPR.AUTH", 4, 4, DOMAIN_EXISTS, cmd_auth },
    { "DPR.DOMAINS", 1, 1, NO_DOMAIN, cmd_domains },
    { "PING", 1, 2, NO_DOMAIN, cmd_ping },
    { "COMMAND", 1, -1, NO_DOMAIN, cmd_command },
    { "QUIT", 1, -1, NO_DOMAIN, cmd_quit },
};

/*
 * The domain argument (argv[1]) of def into c: 0, or -1 with the error
 * reply written. A domain that does not exist is named (a valid name shows
 * nothing but [a-z0-9._-]); its absence is a fact about the working state,
 * held like the rest when that is ahead of the published one.
 */
static int arg_domain(cmd_ctx *c, const cmd_def *def)
{
    size_t len = c->argvlen[1];

    if (!dpr_domain_valid(c->argv[1], len)) {
        dpr_resp_error(c->out, "ERR invalid domain name");
        return -1;
    }
    memcpy(c->domain, c->argv[1], len);
    c->domain[len] = '\0';
    if (def->domain == DOMAIN_ANY)
        return 0;
    c->f = dpr_domains_find(c->ds, c->domain);
    if (!c->f) {
        if (dpr_domains_dirty(c->ds))
            *c->flags |= DPR_CMD_WAIT;
        dpr_resp_errorf(c->out, "ERR unknown domain '%s'", c->domain);
        return -1;
    }
    return 0;
}

int dpr_cmd_execute(dpr_domains *ds, dpr_cmd_conn *conn, int argc, char *const *argv,
                    const size_t *argvlen, dpr_buf *out, unsigned *flags)
{
    size_t saved = out->len;
    cmd_ctx c = { .ds = ds, .conn = conn, .argc = argc, .argv = argv, .argvlen = argvlen,
                  .out = out, .flags = flags };
    const cmd_def *def = NULL;
    char shown[48];
    int rc;

    assert(!dpr_buf_failed(out)); /* a failed reply was taken back */
    *flags = 0;
    if (argc < 1) {
        dpr_resp_error(out, "ERR empty command");
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
        dpr_cmd_show_arg(shown, sizeof(shown), argv[0], argvlen[0]);
        dpr_resp_errorf(out, "ERR unknown command '%s'", shown);
        goto done;
    }
    if (argc < def->min_args || (def->max_args >= 0 && argc > def->max_args)) {
        dpr_resp_errorf(out, "ERR wrong number of arguments for '%s'", def->name);
        goto done;
    }
    if (def->domain != NO_DOMAIN && arg_domain(&c, def) < 0)
        goto done;
    def->run(&c);
done:
    rc = finish_reply(out, saved);
    if (rc < 0)
        *flags &= ~DPR_CMD_CLOSE;
    return rc;
}
