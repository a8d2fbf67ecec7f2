/*
 * fuzz_agent_repl.c - checkpoint replication's commands (replproto.h): bytes
 * through the RESP request reader the replication server uses, each request
 * checked as a peer's (the first byte's low bit clear) or a cache-store's.
 * Nothing may crash or leak, and what is accepted must keep every rule.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replproto.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const agent_repl_cmd *c, bool local)
{
    if (local) {
        if (c->op != AGENT_REPL_SHIP || c->version == 0 || c->path[0] != '/' ||
            !c->instance[0] || !c->token[0])
            abort();
        return;
    }
    if (c->op == AGENT_REPL_SHIP || c->worker == 0 || c->version == 0 ||
        !agent_name_valid(c->deployment, AGENT_DEPLOY_NAME_MAX))
        abort();
    if (c->op == AGENT_REPL_PUT && (c->len == 0 || c->len > AGENT_REPL_CHUNK_MAX || !c->data))
        abort();
    if (c->sum && c->op != AGENT_REPL_HAVE) /* (size and CRC-32: HAVE of protocol 2 only) */
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dpr_reqreader *rd;
    dpr_request req;
    bool local;

    if (size < 1)
        return 0;
    local = data[0] & 1;
    if (dpr_reqreader_new(8, AGENT_REPL_CHUNK_MAX + 4096, &rd) < 0)
        return 0;
    if (dpr_reqreader_feed(rd, (const char *)data + 1, size - 1) == 0) {
        while (dpr_reqreader_next(rd, &req) == 1) {
            agent_repl_cmd c;
            if (!agent_repl_parse(req.argc, req.argv, req.argvlen, local, "demo", &c))
                check(&c, local);
        }
    }
    dpr_reqreader_free(rd);
    return 0;
}
