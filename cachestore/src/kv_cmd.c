/* kv_cmd.c - see kv_cmd.h. */
#include "kv_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/num.h"
#include "common/resp.h"

static const char ERR_NOT_INT[] = "ERR value is not an integer or out of range";
static const char ERR_SYNTAX[] = "ERR syntax error";

static void reply_oom(dpr_buf *out, int rc)
{
    if (rc == -E2BIG)
        dpr_resp_error(out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    else
        dpr_resp_error(out, "OOM command not allowed: out of memory");
}

static int arg_is(const kv_arg *a, const char *word)
{
    size_t n = strlen(word);
    return a->n == n && strncasecmp(a->p, word, n) == 0;
}

/* --- keyspace commands ------------------------------------------------- */

static void cmd_ping(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    if (argc > 2)
        dpr_resp_error(c->out, "ERR wrong number of arguments for 'ping' command");
    else if (argc == 2)
        dpr_resp_bulk(c->out, argv[1].p, argv[1].n);
    else
        dpr_buf_append(c->out, "+PONG\r\n", 7);
}

static void cmd_echo(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    dpr_resp_bulk(c->out, argv[1].p, argv[1].n);
}

static void cmd_get(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    kv_entry *e = kv_dict_find(c->dict, argv[1].p, argv[1].n);
    if (e)
        dpr_resp_bulk(c->out, kv_entry_val(e), e->vlen);
    else
        dpr_resp_nil(c->out);
}

/* SET key value [NX|XX] [GET] [KEEPTTL]; no expiry (EX/PX/EXAT/PXAT). */
static void cmd_set(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    int nx = 0, xx = 0, get = 0, rc;
    size_t mark;
    kv_entry *e;

    for (size_t i = 3; i < argc; i++) {
        const kv_arg *a = &argv[i];
        if (arg_is(a, "nx") && !xx) {
            nx = 1;
        } else if (arg_is(a, "xx") && !nx) {
            xx = 1;
        } else if (arg_is(a, "get")) {
            get = 1;
        } else if (arg_is(a, "keepttl")) {
            /* keys never expire here: nothing to keep */
        } else if (arg_is(a, "ex") || arg_is(a, "px") || arg_is(a, "exat") ||
                   arg_is(a, "pxat")) {
            dpr_resp_error(c->out, "ERR dpr-kv does not support key expiry");
            return;
        } else {
            dpr_resp_error(c->out, ERR_SYNTAX);
            return;
        }
    }
    if (argv[2].n > KV_MAX_VALUE) {
        reply_oom(c->out, -E2BIG);
        return;
    }
    e = (nx || xx || get) ? kv_dict_find(c->dict, argv[1].p, argv[1].n) : NULL;
    mark = c->out->len;
    if (get) {
        if (e)
            dpr_resp_bulk(c->out, kv_entry_val(e), e->vlen);
        else
            dpr_resp_nil(c->out);
    }
    if ((nx && e) || (xx && !e)) {
        if (!get)
            dpr_resp_nil(c->out);
        return;
    }
    rc = kv_dict_set(c->dict, argv[1].p, argv[1].n, argv[2].p, argv[2].n, NULL);
    if (rc < 0) {
        if (!dpr_buf_failed(c->out))
            c->out->len = mark; /* drop the old value: the reply is the error */
        reply_oom(c->out, rc);
        return;
    }
    c->writes++;
    if (!get)
        dpr_buf_append(c->out, "+OK\r\n", 5);
}

static void cmd_del(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    int64_t n = 0;
    for (size_t i = 1; i < argc; i++)
        n += kv_dict_delete(c->dict, argv[i].p, argv[i].n);
    if (n)
        c->writes++;
    dpr_resp_int(c->out, n);
}

static void cmd_exists(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    int64_t n = 0;
    for (size_t i = 1; i < argc; i++)
        n += kv_dict_find(c->dict, argv[i].p, argv[i].n) != NULL;
    dpr_resp_int(c->out, n);
}

static void incr_by(kv_cmd_ctx *c, const kv_arg *key, int64_t by)
{
    kv_entry *e = kv_dict_find(c->dict, key->p, key->n);
    int64_t v = 0;
    char buf[DPR_FMT_I64_MAX];
    int rc;

    if (e && dpr_parse_i64(kv_entry_val(e), e->vlen, &v) < 0) {
        dpr_resp_error(c->out, ERR_NOT_INT);
        return;
    }
    if ((by < 0 && v < 0 && by < INT64_MIN - v) || (by > 0 && v > 0 && by > INT64_MAX - v)) {
        dpr_resp_error(c->out, "ERR increment or decrement would overflow");
        return;
    }
    v += by;
    size_t n = dpr_fmt_i64(buf, v);
    rc = kv_dict_set(c->dict, key->p, key->n, buf, n, NULL);
    if (rc < 0) {
        reply_oom(c->out, rc);
        return;
    }
    c->writes++;
    dpr_resp_int(c->out, v);
}

static void cmd_incr(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    incr_by(c, &argv[1], 1);
}

static void cmd_decr(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    incr_by(c, &argv[1], -1);
}

static void cmd_incrby(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    int64_t by;
    if (dpr_parse_i64(argv[2].p, argv[2].n, &by) < 0) {
        dpr_resp_error(c->out, ERR_NOT_INT);
        return;
    }
    incr_by(c, &argv[1], by);
}

static void cmd_decrby(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    int64_t by;
    if (dpr_parse_i64(argv[2].p, argv[2].n, &by) < 0) {
        dpr_resp_error(c->out, ERR_NOT_INT);
        return;
    }
    if (by == INT64_MIN) {
        dpr_resp_error(c->out, "ERR decrement would overflow");
        return;
    }
    incr_by(c, &argv[1], -by);
}

static void cmd_append(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    kv_entry *e = kv_dict_find(c->dict, argv[1].p, argv[1].n);
    size_t newlen = 0;
    int rc;

    if ((e ? e->vlen : 0) + (uint64_t)argv[2].n > KV_MAX_VALUE) {
        reply_oom(c->out, -E2BIG);
        return;
    }
    rc = kv_dict_append(c->dict, argv[1].p, argv[1].n, argv[2].p, argv[2].n, &newlen);
    if (rc < 0) {
        reply_oom(c->out, rc);
        return;
    }
    c->writes++;
    dpr_resp_int(c->out, (int64_t)newlen);
}

static void cmd_strlen(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    kv_entry *e = kv_dict_find(c->dict, argv[1].p, argv[1].n);
    dpr_resp_int(c->out, e ? (int64_t)e->vlen : 0);
}

static void cmd_mget(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    dpr_resp_array(c->out, argc - 1);
    for (size_t i = 1; i < argc; i++) {
        kv_entry *e = kv_dict_find(c->dict, argv[i].p, argv[i].n);
        if (e)
            dpr_resp_bulk(c->out, kv_entry_val(e), e->vlen);
        else
            dpr_resp_nil(c->out);
    }
}

static void cmd_mset(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    if (argc % 2 == 0) {
        dpr_resp_error(c->out, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (size_t i = 2; i < argc; i += 2) {
        if (argv[i].n > KV_MAX_VALUE) {
            reply_oom(c->out, -E2BIG);
            return;
        }
    }
    for (size_t i = 1; i < argc; i += 2) {
        int rc = kv_dict_set(c->dict, argv[i].p, argv[i].n, argv[i + 1].p, argv[i + 1].n,
                             NULL);
        if (rc < 0) { /* the pairs before stay set, as after a Redis OOM mid-way */
            c->writes++;
            reply_oom(c->out, rc);
            return;
        }
    }
    c->writes++;
    dpr_buf_append(c->out, "+OK\r\n", 5);
}

static void cmd_dbsize(kv_cmd_ctx *c, size_t argc, const kv_arg *argv)
{
    dpr_resp_int(c->out, (int64_t)kv_dict_size(c->dict));
}

/* --- the table --------------------------------------------------------- */

static const kv_command commands[] = {
    /* most frequent first: lookup is a linear scan */
    {"get", 3, 2, 0, KV_SCMD_NONE, cmd_get, 1, 1, 1},
    {"set", 3, -3, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_set, 1, 1, 1},
    {"incr", 4, 2, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_incr, 1, 1, 1},
    {"mget", 4, -2, 0, KV_SCMD_NONE, cmd_mget, 1, -1, 1},
    {"mset", 4, -3, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_mset, 1, -1, 2},
    {"del", 3, -2, KV_CMD_WRITE, KV_SCMD_NONE, cmd_del, 1, -1, 1},
    {"exists", 6, -2, 0, KV_SCMD_NONE, cmd_exists, 1, -1, 1},
    {"ping", 4, -1, 0, KV_SCMD_NONE, cmd_ping, 0, 0, 0},
    {"decr", 4, 2, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_decr, 1, 1, 1},
    {"incrby", 6, 3, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_incrby, 1, 1, 1},
    {"decrby", 6, 3, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_decrby, 1, 1, 1},
    {"append", 6, 3, KV_CMD_WRITE | KV_CMD_DENYOOM, KV_SCMD_NONE, cmd_append, 1, 1, 1},
    {"strlen", 6, 2, 0, KV_SCMD_NONE, cmd_strlen, 1, 1, 1},
    {"echo", 4, 2, 0, KV_SCMD_NONE, cmd_echo, 0, 0, 0},
    {"dbsize", 6, 1, 0, KV_SCMD_NONE, cmd_dbsize, 0, 0, 0},
    {"dpr.batch", 9, 2, KV_CMD_SERVER | KV_CMD_NOBATCH, KV_SCMD_DPR_BATCH, NULL, 0, 0, 0},
    {"info", 4, -1, KV_CMD_SERVER, KV_SCMD_INFO, NULL, 0, 0, 0},
    {"quit", 4, -1, KV_CMD_SERVER | KV_CMD_NOBATCH, KV_SCMD_QUIT, NULL, 0, 0, 0},
    {"command", 7, -1, KV_CMD_SERVER, KV_SCMD_COMMAND, NULL, 0, 0, 0},
    {"config", 6, -2, KV_CMD_SERVER, KV_SCMD_CONFIG, NULL, 0, 0, 0},
    {"select", 6, 2, KV_CMD_SERVER | KV_CMD_NOBATCH, KV_SCMD_SELECT, NULL, 0, 0, 0},
    {"dpr.layout", 10, -1, KV_CMD_SERVER | KV_CMD_NOBATCH, KV_SCMD_DPR_LAYOUT, NULL, 0, 0, 0},
    {"dpr.import", 10, -4, KV_CMD_SERVER | KV_CMD_NOBATCH, KV_SCMD_DPR_IMPORT, NULL, 0, 0, 0},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

const kv_command *kv_command_lookup(const char *name, size_t n)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const kv_command *c = &commands[i];
        if (c->len == n && strncasecmp(c->name, name, n) == 0 &&
            memchr(name, '\0', n) == NULL)
            return c;
    }
    return NULL;
}

size_t kv_command_count(void)
{
    return NCOMMANDS;
}

int kv_command_arity_ok(const kv_command *cmd, size_t argc)
{
    if (cmd->arity > 0)
        return argc == (size_t)cmd->arity;
    return argc >= (size_t)-cmd->arity;
}

/* Appends at most `room` bytes of a, in quotes-free form, like Redis' %.*s. */
static size_t shown(char *dst, size_t room, const kv_arg *a)
{
    size_t n = a->n < room ? a->n : room;
    for (size_t i = 0; i < n; i++)
        dst[i] = a->p[i] ? a->p[i] : ' ';
    return n;
}

void kv_reply_unknown_command(dpr_buf *out, size_t argc, const kv_arg *argv)
{
    char msg[512];
    size_t n = 0, args = 0;

    n += (size_t)snprintf(msg, sizeof(msg), "ERR unknown command '");
    n += shown(msg + n, 128, &argv[0]);
    n += (size_t)snprintf(msg + n, sizeof(msg) - n, "', with args beginning with: ");
    /* Redis: each argument as '%.*s' followed by a space, up to 128 bytes */
    for (size_t i = 1; i < argc && args < 128; i++) {
        size_t start = n;
        msg[n++] = '\'';
        n += shown(msg + n, 128 - args, &argv[i]);
        msg[n++] = '\'';
        msg[n++] = ' ';
        args += n - start;
    }
    msg[n] = '\0';
    dpr_resp_error(out, msg);
}

void kv_reply_wrong_arity(dpr_buf *out, const kv_command *cmd)
{
    dpr_resp_errorf(out, "ERR wrong number of arguments for '%s' command", cmd->name);
}
