/*
 * kv_cmd.h - the command table and the keyspace commands.
 *
 * Keyspace commands (GET, SET, ...) run here against a kv_dict and append
 * their RESP reply to a buffer; replies and error texts follow Redis 7.
 * Commands that need the server (INFO, QUIT, COMMAND, CONFIG, DPR.BATCH,
 * SELECT) are in the same table, flagged KV_CMD_SERVER, and run by the
 * server (kv_server.c), which switches on their id.
 */
#ifndef KV_CMD_H
#define KV_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "kv_dict.h"
#include "kv_resp.h"

#define KV_MAX_VALUE (512u * 1024 * 1024) /* like Redis' proto-max-bulk-len */

enum {
    KV_CMD_WRITE = 1u << 0,   /* changes the keyspace */
    KV_CMD_SERVER = 1u << 1,  /* run by the server, by id */
    KV_CMD_NOBATCH = 1u << 2, /* not allowed inside a DPR batch */
    KV_CMD_DENYOOM = 1u << 3, /* may grow the dataset: refused above maxmemory (Redis' denyoom) */
};

enum kv_server_cmd {
    KV_SCMD_NONE = 0,
    KV_SCMD_INFO,
    KV_SCMD_QUIT,
    KV_SCMD_COMMAND,
    KV_SCMD_CONFIG,
    KV_SCMD_SELECT,
    KV_SCMD_DPR_BATCH,
    KV_SCMD_DPR_LAYOUT,
    KV_SCMD_DPR_IMPORT,
};

typedef struct kv_cmd_ctx {
    kv_dict *dict;
    dpr_buf *out;
    uint64_t writes; /* incremented by every write command that ran */
} kv_cmd_ctx;

typedef struct kv_command {
    const char *name; /* lower case, as in error messages */
    size_t len;
    int arity;        /* Redis' convention: n exact, -n at least n (incl. the name) */
    unsigned flags;
    enum kv_server_cmd id;
    void (*fn)(kv_cmd_ctx *c, size_t argc, const kv_arg *argv);
    /* where its keys are (Redis' key specs): argv[firstkey], then every
     * keystep-th up to argv[lastkey] (-1: the last argument); firstkey 0:
     * no keys. The layout check (kv_resize.c) reads them. */
    int8_t firstkey, lastkey, keystep;
} kv_command;

/* Case-insensitive lookup; NULL if unknown. */
const kv_command *kv_command_lookup(const char *name, size_t n);
/* Number of commands in the table (COMMAND COUNT). */
size_t kv_command_count(void);
/* Arity check: true if argc fits the command. */
int kv_command_arity_ok(const kv_command *cmd, size_t argc);

/* Error replies shared with the server. */
void kv_reply_unknown_command(dpr_buf *out, size_t argc, const kv_arg *argv);
void kv_reply_wrong_arity(dpr_buf *out, const kv_command *cmd);

#endif
