/*
 * fuzz_agent_config.c - dpr-agent's configuration file (config.h,
 * agent_config_load; libconfig's syntax, docs/operations.md) on arbitrary
 * bytes, read from an in-memory file; and node.address's value as the
 * network watcher classifies it (netstate.h, agent_netstate_classify) for
 * each line. Nothing may crash or leak; a refused file says why (at least
 * one problem), a file taken has what the agent needs (cluster, node name
 * and address, state directory, control socket, finder address). An input
 * naming another file (libconfig's @include) is skipped: the target reads
 * nothing but its input. (One leak of libconfig's own is suppressed: below.)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_check.h"
#include "netstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libconfig 1.5's scanner loses memory on some malformed files (a file that
 * ends inside a string literal: its strbuf_append; some tokens: its
 * yylex): bytes once, at start or --check-config, and its own, not the
 * agent's (no allocation of config.c has a libconfig frame below it). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

static void classify_lines(const char *text)
{
    char line[64];

    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        dpr_err err = DPR_ERR_INIT;
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            int kind = agent_netstate_classify(line, &err);
            REQUIRE(kind == AGENT_NETWANT_ADDRESS || kind == AGENT_NETWANT_INTERFACE ||
                    (kind == -EINVAL && err.msg[0]));
        }
        p += n + (p[n] == '\n');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), path[64];
    agent_problems probs;
    agent_config c;
    int fd = -1, rc;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    classify_lines(text);
    for (size_t i = 0; i + 8 <= size; i++)
        if (strncasecmp((const char *)data + i, "@include", 8) == 0)
            goto out;
    fd = memfd_create("agent.conf", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        goto out;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    agent_problems_init(&probs);
    rc = agent_config_load(path, &c, &probs);
    REQUIRE(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    if (rc == -EINVAL)
        REQUIRE(probs.n > 0 || probs.oom);
    if (rc == 0) {
        REQUIRE(c.cluster && c.cluster[0] && c.node_name && c.node_name[0]);
        REQUIRE(c.node_address && c.state_dir && c.control_socket && c.finder_listen);
        agent_config_free(&c);
    }
    agent_problems_free(&probs);
out:
    if (fd >= 0)
        close(fd);
    free(text);
    return 0;
}
