/*
 * fuzz_kv_cmd.c - dpr-kv's keyspace commands (cachestore/src/kv_cmd.c) on
 * what clients send: the input is a RESP stream; each request kv_parse
 * takes is looked up, checked for arity and, when the command is a
 * keyspace one, run against one keyspace kept across the input's requests
 * (as a connection's commands are). Server commands (INFO, CONFIG,
 * DPR.BATCH ...) are the server's and not run here; their arguments are
 * fuzzed by fuzz_kv_resp and fuzz_kv_batch.
 *
 * Checks: nothing crashes or leaks; every command run appends exactly one
 * RESP value (read back with hiredis' reader); only write commands count
 * writes; an unknown command and a wrong arity get one error reply too;
 * a command's key positions (what the layout check reads) lie inside its
 * arguments.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "kv_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* out holds exactly one complete RESP value. */
static void one_reply(const dpr_buf *out)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL, *more = NULL;

    REQUIRE(rd != NULL);
    REQUIRE(redisReaderFeed(rd, out->data, out->len) == REDIS_OK);
    REQUIRE(redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL);
    REQUIRE(redisReaderGetReply(rd, &more) == REDIS_OK && more == NULL);
    REQUIRE(rd->pos == rd->len);
    freeReplyObject(reply);
    redisReaderFree(rd);
}

static void keys_inside(const kv_command *cmd, size_t argc)
{
    if (cmd->firstkey == 0)
        return;
    size_t last = cmd->lastkey < 0 ? argc - 1 : (size_t)cmd->lastkey;
    REQUIRE((size_t)cmd->firstkey < argc && last < argc && cmd->keystep > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t seed[16] = {3};
    const char *buf = (const char *)data;
    dpr_buf out = DPR_BUF_INIT;
    kv_parser p;
    kv_dict d;
    size_t at = 0;

    kv_parser_init(&p, 1 << 16, 64);
    kv_dict_init(&d, seed);
    while (at < size) {
        size_t argc = 0;
        kv_arg *argv = NULL;
        const char *err = NULL;
        ssize_t r = kv_parse(&p, buf + at, size - at, &argc, &argv, &err);
        if (r <= 0)
            break; /* incomplete, or the server closes the connection */
        at += (size_t)r;
        if (argc == 0)
            continue;
        const kv_command *cmd = kv_command_lookup(argv[0].p, argv[0].n);
        out.len = 0;
        if (!cmd) {
            kv_reply_unknown_command(&out, argc, argv);
            one_reply(&out);
            continue;
        }
        if (!kv_command_arity_ok(cmd, argc)) {
            kv_reply_wrong_arity(&out, cmd);
            one_reply(&out);
            continue;
        }
        keys_inside(cmd, argc);
        if (cmd->flags & KV_CMD_SERVER)
            continue;
        kv_cmd_ctx c = {&d, &out, 0};
        cmd->fn(&c, argc, argv);
        one_reply(&out);
        REQUIRE(c.writes <= 1 && (c.writes == 0 || (cmd->flags & KV_CMD_WRITE)));
    }
    kv_dict_free(&d);
    kv_parser_free(&p);
    dpr_buf_free(&out);
    return 0;
}
