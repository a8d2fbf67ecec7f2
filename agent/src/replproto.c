/* replproto.c - see replproto.h. */
#include "replproto.h"

#include <string.h>
#include <strings.h>

#include "common/num.h"

static bool arg_u64(char *const *argv, const size_t *len, int i, uint64_t *out)
{
    return dpr_parse_u64(argv[i], len[i], 0, UINT64_MAX, out) == 0;
}

/* A copy of argument i into out (cap bytes, no NUL inside): false if not. */
static bool arg_str(char *const *argv, const size_t *len, int i, char *out, size_t cap)
{
    if (len[i] == 0 || len[i] >= cap || memchr(argv[i], '\0', len[i]))
        return false;
    memcpy(out, argv[i], len[i]);
    out[len[i]] = '\0';
    return true;
}

static bool is(const char *arg, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp(arg, name, len) == 0;
}

/* DPR.REPLICA.SHIP <instance> <token> <version> <path> */
static const char *parse_ship(int argc, char *const *argv, const size_t *len,
                              agent_repl_cmd *c)
{
    if (!is(argv[0], len[0], "DPR.REPLICA.SHIP"))
        return "unknown command (DPR.REPLICA.SHIP)";
    if (argc != 5)
        return "wrong number of arguments: DPR.REPLICA.SHIP INSTANCE TOKEN VERSION PATH";
    if (!arg_str(argv, len, 1, c->instance, sizeof(c->instance)) ||
        !arg_str(argv, len, 2, c->token, sizeof(c->token)) ||
        !arg_u64(argv, len, 3, &c->version) || c->version == 0 ||
        !arg_str(argv, len, 4, c->path, sizeof(c->path)) || c->path[0] != '/')
        return "DPR.REPLICA.SHIP INSTANCE TOKEN VERSION PATH (an absolute path)";
    c->op = AGENT_REPL_SHIP;
    return NULL;
}

const char *agent_repl_parse(int argc, char *const *argv, const size_t *argvlen, bool local,
                             const char *cluster, agent_repl_cmd *out)
{
    static const struct { const char *name; agent_repl_op op; int argc; } cmds[] = {
        { "DPR.REPL.HAVE", AGENT_REPL_HAVE, 5 },
        { "DPR.REPL.PUT", AGENT_REPL_PUT, 7 },
        { "DPR.REPL.DONE", AGENT_REPL_DONE, 7 },
    };
    agent_repl_cmd c;
    int k = -1;
    const char *bad;

    memset(&c, 0, sizeof(c));
    if (argc < 1)
        return "empty request";
    if (local) {
        bad = parse_ship(argc, argv, argvlen, &c);
        if (!bad)
            *out = c;
        return bad;
    }
    for (int i = 0; i < 3; i++)
        if (is(argv[0], argvlen[0], cmds[i].name))
            k = i;
    if (k < 0)
        return "unknown command (DPR.REPL.HAVE, DPR.REPL.PUT, DPR.REPL.DONE)";
    /* (HAVE with the sender's size and CRC-32 is protocol 2: an older
     * agent refuses it with "wrong number of arguments") */
    if (argc != cmds[k].argc && !(cmds[k].op == AGENT_REPL_HAVE && argc == 7))
        return "wrong number of arguments";
    if (argvlen[1] != strlen(cluster) || memcmp(argv[1], cluster, argvlen[1]) != 0)
        return "another cluster: this agent takes copies of its own cluster only";
    if (!arg_str(argv, argvlen, 2, c.deployment, sizeof(c.deployment)) ||
        !agent_name_valid(c.deployment, AGENT_DEPLOY_NAME_MAX))
        return "not a deployment name";
    if (!arg_u64(argv, argvlen, 3, &c.worker) || c.worker == 0 ||
        !arg_u64(argv, argvlen, 4, &c.version) || c.version == 0)
        return "worker and version must be integers >= 1";
    c.op = cmds[k].op;
    if (c.op == AGENT_REPL_PUT) {
        if (!arg_u64(argv, argvlen, 5, &c.offset))
            return "offset must be an integer";
        if (argvlen[6] == 0 || argvlen[6] > AGENT_REPL_CHUNK_MAX)
            return "1 to 1048576 bytes per PUT";
        c.data = argv[6];
        c.len = argvlen[6];
    } else if (c.op == AGENT_REPL_DONE || argc == 7) {
        uint64_t crc;
        if (!arg_u64(argv, argvlen, 5, &c.size) || !arg_u64(argv, argvlen, 6, &crc) ||
            crc > UINT32_MAX)
            return "size and crc32 must be integers";
        c.crc = (uint32_t)crc;
        c.sum = c.op == AGENT_REPL_HAVE;
    }
    *out = c;
    return NULL;
}
