/* test_authz.c - who may run which finder command on the TLS port
 * (finder/src/authz.c): nodes everything, everyone else reads only, and the
 * refusal names the peer and the command. */
#include <string.h>

#include "authz.h"
#include "check.h"
#include "common/buf.h"

static dpr_tls_peer peer(const char *cluster, const char *role, const char *name)
{
    dpr_tls_peer p;

    memset(&p, 0, sizeof(p));
    strcpy(p.subject, "CN=x,O=c1");
    strcpy(p.cn, "x");
    strcpy(p.cluster, cluster);
    strcpy(p.role, role);
    strcpy(p.name, name);
    return p;
}

static bool allowed(const dpr_tls_peer *p, const char *cmd)
{
    return dpr_authz_allowed(p, cmd, strlen(cmd));
}

static const char *const writes[] = {
    "DPR.WORKER.ADD", "DPR.WORKER.REMOVE", "DPR.WORKER.LEAVE", "DPR.REPORT", "DPR.AUTH",
    "dpr.worker.add", "DPR.CLUSTER.STATUS", "NOSUCH", "",
};
static const char *const reads[] = {
    "DPR.SYNC", "dpr.prefix", "DPR.DOMAINS", "DPR.CLUSTER.ENDPOINTS", "PING", "COMMAND",
    "QUIT",
};

TEST(node_runs_everything)
{
    dpr_tls_peer n = peer("c1", "node", "kv1");

    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
        CHECK(allowed(&n, writes[i]));
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
        CHECK(allowed(&n, reads[i]));
}

TEST(others_only_read)
{
    dpr_tls_peer client = peer("c1", "client", "app");
    dpr_tls_peer bare = peer("", "", ""); /* a certificate without a dpr:// URI */
    const dpr_tls_peer *who[] = { &client, &bare, NULL };

    for (size_t w = 0; w < 3; w++) {
        for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++)
            CHECK(!allowed(who[w], writes[i]));
        for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
            CHECK(allowed(who[w], reads[i]));
        /* a prefix or an extension of a read is not that read */
        CHECK(!dpr_authz_allowed(who[w], "DPR.SYNC", 7));
        CHECK(!allowed(who[w], "DPR.SYNCX"));
    }
}

TEST(refusal_names_peer_and_command)
{
    dpr_tls_peer client = peer("c1", "client", "app");
    dpr_buf out;
    char bin[] = "DPR.WORKER.ADD\r\nX";

    dpr_buf_init(&out);
    CHECK_EQ_INT(dpr_authz_refuse(&client, "dpr.worker.add", 14, &out), 0);
    CHECK(out.len > 8 && memcmp(out.data, "-ERR permission denied: dpr://c1/client/app may "
                                "not run 'dpr.worker.add'", 67) == 0);
    CHECK(memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
    /* one line, whatever the command's bytes */
    out.len = 0;
    CHECK_EQ_INT(dpr_authz_refuse(NULL, bin, sizeof(bin) - 1, &out), 0);
    CHECK(memmem(out.data, out.len, "without a certificate", 21) != NULL);
    CHECK(memchr(out.data, '\n', out.len) == out.data + out.len - 1);
    dpr_buf_free(&out);
}

int main(void)
{
    RUN(node_runs_everything);
    RUN(others_only_read);
    RUN(refusal_names_peer_and_command);
    return check_summary("authz");
}
