/* envfile.c - see envfile.h. */
#include "envfile.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void agent_env_endpoint(const agent_instance *in, const char *host, char *out, size_t outlen)
{
    if (strchr(host, ':'))
        snprintf(out, outlen, "[%s]:%u", host, in->port);
    else
        snprintf(out, outlen, "%s:%u", host, in->port);
}

char *agent_env_render(const agent_instance *in, const agent_env_ctx *c)
{
    char endpoint[320], *text = NULL;
    int n;

    agent_env_endpoint(in, c->listen_host, endpoint, sizeof(endpoint));
    n = asprintf(&text,
                 "# written by dpr-agent for dpr-cachestore@%s.service; do not edit\n"
                 "DPR_CS_EXEC=%s\n"
                 "DPR_CLUSTER=%s\n"
                 "DPR_NODE=%s\n"
                 "DPR_INSTANCE=%s\n"
                 "DPR_DEPLOYMENT=%s\n"
                 "DPR_SHARD=%u\n"
                 "DPR_IMPL=%s\n"
                 "DPR_VERSION=%s\n"
                 "DPR_LISTEN=%s\n"
                 "DPR_FINDER=%s\n"
                 "DPR_WORKER=%llu\n"
                 "DPR_CHECKPOINT_INTERVAL_MS=%u\n"
                 "DPR_MAX_CLIENTS=%u\n"
                 "# the same for dpr-kv (docs/dpr-kv.md, Configuration)\n"
                 "DPR_KV_LISTEN=%s\n"
                 "DPR_KV_FINDER=%s\n"
                 "DPR_KV_WORKER=%llu\n"
                 "DPR_KV_CHECKPOINT_INTERVAL_MS=%u\n"
                 "DPR_KV_MAX_CLIENTS=%u\n",
                 in->name, c->exec, c->cluster, c->node, in->name, in->deployment, in->shard,
                 in->impl, in->version, endpoint, c->finder, (unsigned long long)in->worker,
                 in->checkpoint_interval_ms, in->max_clients, endpoint, c->finder,
                 (unsigned long long)in->worker, in->checkpoint_interval_ms, in->max_clients);
    return n < 0 ? NULL : text;
}

static int same_content(const char *path, const char *text)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    FILE *f = fopen(path, "rb");
    size_t got;
    int same = 0;

    if (buf && f) {
        got = fread(buf, 1, len + 1, f);
        same = got == len && memcmp(buf, text, len) == 0;
    }
    if (f)
        fclose(f);
    free(buf);
    return same;
}


int agent_env_write(const char *dir, const char *name, const char *text)
{
    char path[4200], tmp[4210];
    int fd = -1, rc;

    snprintf(path, sizeof(path), "%s/%s.env", dir, name);
    if (same_content(path, text))
        return 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        rc = agent_mkdir_p(dir, 0755);
        if (rc < 0)
            return rc;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return -errno;
    rc = agent_write_all(fd, text, strlen(text));
    if (rc < 0)
        goto fail;
    /* no fsync: instance files live in /run (lost at reboot anyway, and
     * rewritten by the agent at start); the rename makes the change atomic */
    if (fchmod(fd, 0644) < 0) {
        rc = -errno;
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    return 1;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int agent_env_remove(const char *dir, const char *name)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/%s.env", dir, name);
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}
