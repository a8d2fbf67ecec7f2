/* envfile.c - see envfile.h. */
#include "envfile.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "insttls.h"

static void hostport(const char *host, uint16_t port, char *out, size_t outlen)
{
    if (strchr(host, ':'))
        snprintf(out, outlen, "[%s]:%u", host, port);
    else
        snprintf(out, outlen, "%s:%u", host, port);
}

void agent_env_endpoint(const agent_instance *in, const char *host, char *out, size_t outlen)
{
    hostport(host, in->port, out, outlen);
}

bool agent_env_metrics_endpoint(const agent_instance *in, const char *host, char *out,
                                size_t outlen)
{
    if (!in->metrics_port)
        return false;
    hostport(host, in->metrics_port, out, outlen);
    return true;
}

/* Appends to *text (NULL stays NULL: out of memory, freed) and returns it. */
__attribute__((format(printf, 2, 3))) static char *appendf(char *text, const char *fmt, ...)
{
    char *more = NULL, *tail = NULL;
    va_list ap;
    int n;

    if (!text)
        return NULL;
    va_start(ap, fmt);
    n = vasprintf(&tail, fmt, ap);
    va_end(ap);
    if (n >= 0 && asprintf(&more, "%s%s", text, tail) < 0)
        more = NULL;
    free(tail);
    free(text);
    return n < 0 ? NULL : more;
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
                 "# its DPR domain: the deployment's name (world-lines, cut, recovery)\n"
                 "DPR_DOMAIN=%s\n"
                 "DPR_SHARD=%u\n"
                 "DPR_IMPL=%s\n"
                 "DPR_VERSION=%s\n"
                 "DPR_LISTEN=%s\n"
                 "DPR_FINDER=%s\n"
                 "DPR_WORKER=%llu\n"
                 "DPR_CHECKPOINT_INTERVAL_MS=%u\n"
                 "DPR_MAX_CLIENTS=%u\n"
                 "DPR_MAXMEMORY=%llu\n"
                 "# the same for dpr-kv (docs/dpr-kv.md, Configuration)\n"
                 "DPR_KV_LISTEN=%s\n"
                 "DPR_KV_FINDER=%s\n"
                 "DPR_KV_WORKER=%llu\n"
                 "DPR_KV_DOMAIN=%s\n"
                 "DPR_KV_CHECKPOINT_INTERVAL_MS=%u\n"
                 "DPR_KV_MAX_CLIENTS=%u\n"
                 "DPR_KV_MAXMEMORY=%llu\n"
                 "# no key is served before the agent gives the shard its layout\n"
                 "DPR_KV_AWAIT_LAYOUT=1\n"
                 "# its finder registration token: a secret (this file is mode 0600)\n"
                 "DPR_FINDER_TOKEN=%s\n"
                 "DPR_KV_FINDER_TOKEN=%s\n",
                 in->name, c->exec, c->cluster, c->node, in->name, in->deployment,
                 in->deployment, in->shard, in->impl, in->version, endpoint, c->finder,
                 (unsigned long long)in->worker, in->checkpoint_interval_ms, in->max_clients,
                 (unsigned long long)in->maxmemory, endpoint, c->finder,
                 (unsigned long long)in->worker, in->deployment, in->checkpoint_interval_ms,
                 in->max_clients,
                 (unsigned long long)in->maxmemory, in->token, in->token);
    if (n < 0)
        return NULL;
    if (c->replica_socket)
        /* a cluster: a checkpoint is reported once its copies are made; an
         * instance moved here starts from the copies this node holds */
        text = appendf(text, "# checkpoints are copied to other nodes before they count\n"
                       "DPR_REPLICA_SOCKET=%s\nDPR_KV_REPLICA_SOCKET=%s\nDPR_KV_INSTANCE=%s\n"
                       "# moved here from a lost node: its checkpoints, as copied here\n"
                       "DPR_SEED_DIR=%s/%s/%llu\nDPR_KV_SEED_DIR=%s/%s/%llu\n",
                       c->replica_socket, c->replica_socket, in->name, c->replica_root,
                       in->deployment, (unsigned long long)in->worker, c->replica_root,
                       in->deployment, (unsigned long long)in->worker);
    if (agent_env_metrics_endpoint(in, c->listen_host, endpoint, sizeof(endpoint)))
        text = appendf(text, "# its Prometheus endpoint (cachestores.metrics_port_min/max)\n"
                       "DPR_KV_METRICS_ADDRESS=%s\n", endpoint);
    if (c->tls_dir)
        /* one port, TLS only: a plain listener anyone can reach would undo it
         * (docs/tls.md, "Deployments over TLS") */
        text = appendf(text, "# TLS only, with this node's certificate (docs/tls.md)\n"
                       "DPR_KV_PORT=0\nDPR_KV_TLS_PORT=%u\n"
                       "DPR_KV_TLS_CERT_FILE=%s/" AGENT_INSTTLS_CERT "\n"
                       "DPR_KV_TLS_KEY_FILE=%s/" AGENT_INSTTLS_KEY "\n"
                       "DPR_KV_TLS_CA_CERT_FILE=%s/" AGENT_INSTTLS_CA "\n"
                       "DPR_KV_TLS_AUTH_CLIENTS=%s\nDPR_KV_FINDER_TLS=yes\n",
                       in->port, c->tls_dir, c->tls_dir, c->tls_dir,
                       agent_tls_clients_auth(in->tls_clients));
    if (c->tls_dir && c->tls_crl)
        text = appendf(text, "DPR_KV_TLS_CRL_FILE=%s/" AGENT_INSTTLS_CRL "\n", c->tls_dir);
    if (in->checkpoint_mode[0])
        /* the spec's checkpoint_mode; absent: dpr-kv's default (log) */
        text = appendf(text, "DPR_KV_CHECKPOINT_MODE=%s\n", in->checkpoint_mode);
    return text;
}

static int same_content(const char *path, const char *text)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    FILE *f = fopen(path, "rb");
    size_t got;
    int same = 0;

    struct stat sb;

    /* a file of another mode (0644, before tokens) is written again */
    if (buf && f && fstat(fileno(f), &sb) == 0 && (sb.st_mode & 07777) == AGENT_ENV_MODE) {
        got = fread(buf, 1, len + 1, f);
        same = got == len && memcmp(buf, text, len) == 0;
    }
    if (f)
        fclose(f);
    free(buf);
    return same;
}

/* dir/<name>.env into path; -ENAMETOOLONG when it does not fit. */
static int env_path(char *path, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(path, cap, "%s/%s.env", dir, name);

    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int agent_env_write(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    size_t len = strlen(text);
    int rc;

    rc = env_path(path, sizeof(path), dir, name);
    if (rc < 0)
        return rc;
    if (same_content(path, text))
        return 0;
    /* no fsync: instance files live in /run (lost at reboot anyway, and
     * rewritten by the agent at start); the rename makes the change atomic */
    rc = dpr_replace_file(path, text, len, AGENT_ENV_MODE, false, NULL);
    if (rc == -ENOENT) {
        rc = dpr_mkdir_p(dir, 0755, NULL);
        if (rc < 0)
            return rc;
        rc = dpr_replace_file(path, text, len, AGENT_ENV_MODE, false, NULL);
    }
    return rc < 0 ? rc : 1;
}

int agent_env_remove(const char *dir, const char *name)
{
    char path[PATH_MAX];
    int rc = env_path(path, sizeof(path), dir, name);

    if (rc < 0)
        return rc;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}
