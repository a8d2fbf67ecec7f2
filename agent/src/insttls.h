/*
 * insttls.h - the TLS files of the agent's cache-store instances
 * (docs/tls.md, "Deployments over TLS"). With agent.conf's tls.enabled the
 * instances serve their port over TLS only and reach the finder over TLS,
 * with this node's certificate. The node's key is root's (0600): the
 * agent copies the node's certificate, key, CA and CRL into
 * DIR/tls/ (DIR: cachestores.instance_directory, /run/dpr/instances), the
 * key 0640 and the directory 0750 with group dpr-cachestore (the
 * instances' user: no other user reads them; DIR becomes 0710 with that
 * group, so it passes through and cannot list the instance files; without
 * that group, or when the agent is not root, the agent's user alone), and
 * the instance files
 * name these copies. It writes them at its start and again at a reload
 * (SIGHUP) that loaded new files, each by a rename, then reloads the
 * running instances (their ExecReload=, SIGHUP), which read the new ones
 * whole.
 */
#ifndef AGENT_INSTTLS_H
#define AGENT_INSTTLS_H

#include <stddef.h>

#include "common/err.h"
#include "config.h"

/* The copies' names in the directory. */
#define AGENT_INSTTLS_CERT "node.crt"
#define AGENT_INSTTLS_KEY "node.key"
#define AGENT_INSTTLS_CA "ca.crt"
#define AGENT_INSTTLS_CRL "ca.crl"

/* DIR/tls of c (cachestores.instance_directory) into out: -ENAMETOOLONG
 * when it does not fit. */
int agent_insttls_dir(const agent_config *c, char *out, size_t cap);

/* Copies c's tls files (tls.cert, key, ca and crl when set) into
 * agent_insttls_dir. 0, or a negative errno with the file and the reason. */
int agent_insttls_write(const agent_config *c, dpr_err *err);

#endif
