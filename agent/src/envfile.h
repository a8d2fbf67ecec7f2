/*
 * envfile.h - an instance's environment file, read by its unit through
 * EnvironmentFile=/run/dpr/instances/%i.env. It carries everything the
 * cache-store process needs: the program to run, where to listen, the
 * finder, its domain (the deployment's name), its worker id and finder
 * token, settings, and its metrics address when it has one (docs/operations.md,
 * "Instance files").
 */
#ifndef AGENT_ENVFILE_H
#define AGENT_ENVFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "state.h"

typedef struct agent_env_ctx {
    const char *exec;        /* the implementation's program */
    const char *listen_host; /* cachestores.listen_address */
    const char *finder;      /* HOST:PORT cache-stores reach the finder on */
    const char *cluster;
    const char *node;
    const char *replica_socket; /* a cluster: where it asks for its copies (replica.h) */
    const char *replica_root;   /* a cluster: the copies this node holds (replstore.h): an
                                   instance moved here starts from its own */
    /* the agents' TLS (tls.enabled; NULL: off): the directory of the
     * instances' copies of the node's files (insttls.h). The instance then
     * serves its port over TLS only (its --tls-auth-clients from
     * in->tls_clients) and reaches `finder`, the finders' TLS ports, over
     * TLS; crl: a CRL is among the copies */
    const char *tls_dir;
    bool tls_crl;
} agent_env_ctx;

/* The file's text (malloc'd, NUL-terminated) or NULL on ENOMEM. */
char *agent_env_render(const agent_instance *in, const agent_env_ctx *ctx);

/* "HOST:PORT" of the instance ("[v6]:PORT" for an IPv6 host). */
void agent_env_endpoint(const agent_instance *in, const char *host, char *out, size_t outlen);

/* "HOST:PORT" of the instance's metrics endpoint: false (out untouched)
 * when it has none. */
bool agent_env_metrics_endpoint(const agent_instance *in, const char *host, char *out,
                                size_t outlen);

/* Instance files hold the instance's finder token: only root (systemd reads
 * them for EnvironmentFile=) may read them. */
#define AGENT_ENV_MODE 0600

/*
 * Writes dir/<name>.env (mode AGENT_ENV_MODE) atomically but without fsync
 * (dpr_replace_file, not durable: /run is lost at reboot anyway), creating
 * dir (0755) if missing, unless it already holds exactly text with that
 * mode. 1 written, 0 unchanged, or a negative errno.
 */
int agent_env_write(const char *dir, const char *name, const char *text);
/* Removes dir/<name>.env; 0 also when it did not exist. */
int agent_env_remove(const char *dir, const char *name);

#endif
