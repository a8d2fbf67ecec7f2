/*
 * fuzz_kv_config.c - dpr-kv's settings as an instance's environment file
 * gives them (cachestore/src/kv_config.c; the agent writes the file,
 * systemd reads it with EnvironmentFile=, docs/operations.md).
 *
 * The input's lines are NAME=VALUE; the names of dpr-kv's variables
 * (DPR_KV_*) and STATE_DIRECTORY are set in the environment, then
 * kv_config_parse runs with no flags, and every variable set is unset
 * again. Checks: nothing crashes or leaks; no flag means no --help or
 * --version; settings taken to run hold the rules dpr-kv relies on (the
 * required ones present, the finder token 1..KV_FINDER_TOKEN_MAX visible
 * characters, a sync interval, the domain's id of its name, terminated
 * strings). What kv_config_parse prints about a refusal goes to /dev/null.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpr/domain.h"
#include "fuzz_check.h"
#include "kv_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VARS 32

static bool ours(const char *name)
{
    return strncmp(name, "DPR_KV_", 7) == 0 || strcmp(name, "STATE_DIRECTORY") == 0;
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check(const kv_config *c)
{
    size_t n = strlen(c->finder_token);

    REQUIRE(terminated(c->listen, sizeof(c->listen)) && terminated(c->finder, sizeof(c->finder)));
    REQUIRE(terminated(c->dir, sizeof(c->dir)) && terminated(c->instance, sizeof(c->instance)));
    REQUIRE(terminated(c->domain, sizeof(c->domain)));
    REQUIRE(c->finder[0] && c->worker_set && c->dir[0] && c->instance[0]);
    REQUIRE(c->sync_interval_ms > 0 && c->domain[0]);
    REQUIRE(c->domain_id == dpr_domain_id(c->domain, strlen(c->domain)));
    REQUIRE(n <= KV_FINDER_TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        REQUIRE(c->finder_token[i] >= 0x21 && c->finder_token[i] <= 0x7e);
    REQUIRE(c->port < 0 || c->tls_port == 0 || (unsigned)c->port != c->tls_port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    char *text = malloc(size + 1), *save = NULL, names[VARS][40], argv0[] = "dpr-kv";
    char *argv[] = {argv0, NULL};
    size_t nset = 0;
    kv_config *c = malloc(sizeof(*c));
    FILE *saved = stderr;

    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (!text || !c || !devnull)
        goto out;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *l = strtok_r(text, "\n", &save); l && nset < VARS; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (!ours(l) || strlen(l) >= sizeof(names[0])) /* (no name of ours is that long) */
            continue;
        strcpy(names[nset], l);
        *eq = '=';
        /* putenv keeps the line itself (setenv would keep a copy of every
         * value ever set: memory grows run after run) */
        if (putenv(l) == 0)
            nset++;
    }
    stderr = devnull; /* (glibc's stderr is a variable: libFuzzer keeps its own) */
    enum kv_config_result r = kv_config_parse(c, 1, argv);
    stderr = saved;
    REQUIRE(r == KV_CONFIG_RUN || r == KV_CONFIG_EXIT_USAGE);
    if (r == KV_CONFIG_RUN)
        check(c);
    for (size_t i = 0; i < nset; i++)
        unsetenv(names[i]);
out:
    free(c);
    free(text);
    return 0;
}
