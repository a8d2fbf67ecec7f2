/* authz.c - see authz.h. */
#include "authz.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmd.h"

/* What a reader (not a node) may run (DPR.CLUSTER.ENDPOINTS: the agent's
answer where a deployment's shards are, which a client asks for over TLS). */
static const char *const reads[] = {
    "DPR.SYNC", "DPR.PREFIX", "DPR.DOMAINS", "DPR.CLUSTER.ENDPOINTS", "PING", "COMMAND", "QUIT",
};

static bool is_node(const dpr_tls_peer *peer)
{
    return peer && peer->cluster[0] && strcmp(peer->role, "node") == 0;
}

bool dpr_authz_allowed(const dpr_tls_peer *peer, const char *cmd, size_t n)
{
    if (is_node(peer))
        return true;
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
        if (n == strlen(reads[i]) && strncasecmp(cmd, reads[i], n) == 0)
            return true;
    return false;
}

void dpr_authz_describe(const dpr_tls_peer *peer, char *out, size_t cap)
{
    if (!peer)
        snprintf(out, cap, "a connection without a certificate");
    else if (peer->cluster[0])
        snprintf(out, cap, "dpr://%s/%s/%s", peer->cluster, peer->role, peer->name);
    else
        snprintf(out, cap, "certificate '%s' (no dpr:// name)", peer->subject);
}

int dpr_authz_refuse(const dpr_tls_peer *peer, const char *cmd, size_t n, dpr_buf *out)
{
    char who[DPR_TLS_NAME_MAX + 96], shown[48], msg[sizeof(who) + 256];

    dpr_authz_describe(peer, who, sizeof(who));
    dpr_cmd_show_arg(shown, sizeof(shown), cmd, n);
    snprintf(msg, sizeof(msg),
             "ERR permission denied: %s may not run '%s' (only node certificates of the "
             "cluster may change the finder; others may run DPR.SYNC, DPR.PREFIX, "
             "DPR.DOMAINS, DPR.CLUSTER.ENDPOINTS, PING)", who, shown);
    return dpr_cmd_error(out, msg);
}
