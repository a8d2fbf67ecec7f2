/* test_agent_dnssd.c - DNS-SD records and the decisions of a node without
 * a seed list (dnssd.h): names, TXT strings, agents' records read back,
 * bootstrap or join. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "dnssd.h"

TEST(names_and_txt)
{
    agent_dnssd_service s, t;

    CHECK_EQ_INT(agent_dnssd_init(&s, AGENT_DNSSD_CS, "kv-0", "demo", 7100), 0);
    CHECK(strcmp(s.name, "kv-0@demo") == 0);
    CHECK(strcmp(s.type, "_dpr-cs._tcp") == 0);
    CHECK_EQ_INT(s.port, 7100);
    CHECK_EQ_INT((int)s.ntxt, 2);
    CHECK(strcmp(s.txt[0], "txtvers=1") == 0);
    CHECK(strcmp(s.txt[1], "cluster=demo") == 0);
    CHECK_EQ_INT(agent_dnssd_txt(&s, "shard", "%u", 0u), 0);
    CHECK(strcmp(agent_dnssd_txt_get(&s, "shard"), "0") == 0);
    CHECK(strcmp(agent_dnssd_txt_get(&s, "cluster"), "demo") == 0);
    CHECK(agent_dnssd_txt_get(&s, "shar") == NULL);
    CHECK(agent_dnssd_txt_get(&s, "node") == NULL);

    /* same: every field, TXT in order */
    t = s;
    CHECK(agent_dnssd_same(&s, &t));
    t.port = 7101;
    CHECK(!agent_dnssd_same(&s, &t));
    t = s;
    snprintf(t.txt[2], sizeof(t.txt[2]), "shard=1");
    CHECK(!agent_dnssd_same(&s, &t));
    t = s;
    CHECK_EQ_INT(agent_dnssd_txt(&t, "x", "y"), 0);
    CHECK(!agent_dnssd_same(&s, &t));
}

TEST(long_names_stay_unique_labels)
{
    char who[80];
    agent_dnssd_service a, b;

    memset(who, 'n', sizeof(who) - 1);
    who[sizeof(who) - 1] = '\0';
    CHECK_EQ_INT(agent_dnssd_init(&a, AGENT_DNSSD_AGENT, who, "demo", 7000), 0);
    who[70] = 'm';
    CHECK_EQ_INT(agent_dnssd_init(&b, AGENT_DNSSD_AGENT, who, "demo", 7000), 0);
    CHECK(strlen(a.name) <= AGENT_DNSSD_NAME_MAX);
    CHECK(strlen(b.name) <= AGENT_DNSSD_NAME_MAX);
    CHECK(strcmp(a.name + strlen(a.name) - 5, "@demo") == 0);
    CHECK(strchr(a.name, '~') != NULL);
    CHECK(strcmp(a.name, b.name) != 0); /* the same start, another hash */
    /* a name that fits is kept as it is */
    CHECK_EQ_INT(agent_dnssd_init(&a, AGENT_DNSSD_AGENT, "node1", "demo", 7000), 0);
    CHECK(strcmp(a.name, "node1@demo") == 0);
}

TEST(txt_limits)
{
    agent_dnssd_service s;
    char big[200];

    CHECK_EQ_INT(agent_dnssd_init(&s, AGENT_DNSSD_AGENT, "n", "demo", 1), 0);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_EQ_INT(agent_dnssd_txt(&s, "k", "%s", big), -E2BIG);
    CHECK_EQ_INT((int)s.ntxt, 2); /* nothing half-added */
    while (s.ntxt < AGENT_DNSSD_TXT_MAX)
        CHECK_EQ_INT(agent_dnssd_txt(&s, "k", "v"), 0);
    CHECK_EQ_INT(agent_dnssd_txt(&s, "k", "v"), -ENOSPC);
}

TEST(states)
{
    CHECK_EQ_INT(agent_dnssd_state_parse("member"), AGENT_DNSSD_MEMBER);
    CHECK_EQ_INT(agent_dnssd_state_parse("fresh"), AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_state_parse("single"), AGENT_DNSSD_SINGLE);
    CHECK_EQ_INT(agent_dnssd_state_parse("Member"), AGENT_DNSSD_UNKNOWN);
    CHECK_EQ_INT(agent_dnssd_state_parse(NULL), AGENT_DNSSD_UNKNOWN);
    CHECK(strcmp(agent_dnssd_state_name(AGENT_DNSSD_FRESH), "fresh") == 0);
}

TEST(peer_records)
{
    char *ok[] = { "txtvers=1", "cluster=demo", "node=node2", "api=1",
                   "finder=10.0.0.2:7000", "raft=10.0.0.2:7400", "state=member" };
    char *other[] = { "txtvers=1", "cluster=demo2", "node=node9", "raft=10.0.0.9:7400",
                      "state=member" };
    char *v2[] = { "txtvers=2", "cluster=demo", "node=node2", "raft=10.0.0.2:7400" };
    char *single[] = { "txtvers=1", "cluster=demo", "node=node2", "state=single" };
    char *bad_raft[] = { "txtvers=1", "cluster=demo", "node=node2", "raft=node2:7400" };
    char *bad_port[] = { "txtvers=1", "cluster=demo", "node=node2", "raft=10.0.0.2:0" };
    char *no_node[] = { "txtvers=1", "cluster=demo", "raft=10.0.0.2:7400" };
    char *prefix[] = { "txtvers=1", "clusterx=demo", "cluster=demo", "node=n",
                       "raft=10.0.0.2:7400", "state=fresh" };
    agent_dnssd_peer p;

    CHECK_EQ_INT(agent_dnssd_peer_parse(ok, 7, "demo", &p), 1);
    CHECK(strcmp(p.node, "node2") == 0);
    CHECK(strcmp(p.raft, "10.0.0.2:7400") == 0);
    CHECK(strcmp(p.finder, "10.0.0.2:7000") == 0);
    CHECK_EQ_INT(p.state, AGENT_DNSSD_MEMBER);
    /* another cluster (also one whose name starts the same) is not ours */
    CHECK_EQ_INT(agent_dnssd_peer_parse(other, 5, "demo", &p), 0);
    CHECK_EQ_INT(agent_dnssd_peer_parse(ok, 7, "dem", &p), 0);
    CHECK_EQ_INT(agent_dnssd_peer_parse(v2, 4, "demo", &p), 0);
    CHECK_EQ_INT(agent_dnssd_peer_parse(single, 4, "demo", &p), 0);
    CHECK_EQ_INT(agent_dnssd_peer_parse(bad_raft, 4, "demo", &p), -EINVAL);
    CHECK_EQ_INT(agent_dnssd_peer_parse(bad_port, 4, "demo", &p), -EINVAL);
    CHECK_EQ_INT(agent_dnssd_peer_parse(no_node, 3, "demo", &p), -EINVAL);
    CHECK_EQ_INT(agent_dnssd_peer_parse(prefix, 6, "demo", &p), 1);
    CHECK_EQ_INT(p.state, AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_peer_parse(NULL, 0, "demo", &p), 0);
}

static agent_dnssd_peer peer(const char *raft, agent_dnssd_state st)
{
    agent_dnssd_peer p;

    memset(&p, 0, sizeof(p));
    snprintf(p.node, sizeof(p.node), "n-%s", raft);
    snprintf(p.raft, sizeof(p.raft), "%s", raft);
    p.state = st;
    return p;
}

TEST(decisions)
{
    char addrs[8][AGENT_DNSSD_ADDR_MAX];
    agent_dnssd_peer v[5];
    size_t n;

    /* nothing found: wait */
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 3, NULL, 0, addrs, 8, &n),
                 AGENT_DNSSD_WAIT);
    /* only itself, expecting 1: bootstrap alone */
    v[0] = peer("10.0.0.2:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 1, v, 1, addrs, 8, &n),
                 AGENT_DNSSD_BOOTSTRAP);
    CHECK_EQ_INT((int)n, 1);
    CHECK(strcmp(addrs[0], "10.0.0.2:7400") == 0);
    /* two of three: wait */
    v[1] = peer("10.0.0.1:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 3, v, 2, addrs, 8, &n), AGENT_DNSSD_WAIT);
    /* three (own record not seen yet: counted anyway) */
    v[0] = peer("10.0.0.3:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 3, v, 2, addrs, 8, &n),
                 AGENT_DNSSD_BOOTSTRAP);
    CHECK_EQ_INT((int)n, 3);
    CHECK(strcmp(addrs[0], "10.0.0.1:7400") == 0);
    CHECK(strcmp(addrs[1], "10.0.0.2:7400") == 0);
    CHECK(strcmp(addrs[2], "10.0.0.3:7400") == 0);
    /* four fresh, expecting three: the three lowest bootstrap, the fourth waits */
    v[2] = peer("10.0.0.2:7400", AGENT_DNSSD_FRESH);
    v[3] = peer("10.0.0.4:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.4:7400", 3, v, 4, addrs, 8, &n), AGENT_DNSSD_WAIT);
    CHECK_EQ_INT((int)n, 0);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.3:7400", 3, v, 4, addrs, 8, &n),
                 AGENT_DNSSD_BOOTSTRAP);
    CHECK_EQ_INT((int)n, 3);
    CHECK(strcmp(addrs[2], "10.0.0.3:7400") == 0);
    /* a member anywhere: join it, whatever expect says */
    v[4] = peer("10.0.0.9:7400", AGENT_DNSSD_MEMBER);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.4:7400", 3, v, 5, addrs, 8, &n), AGENT_DNSSD_JOIN);
    CHECK_EQ_INT((int)n, 1);
    CHECK(strcmp(addrs[0], "10.0.0.9:7400") == 0);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.4:7400", 0, v, 5, addrs, 8, &n), AGENT_DNSSD_JOIN);
    /* its own record saying member does not count as one to join */
    v[0] = peer("10.0.0.4:7400", AGENT_DNSSD_MEMBER);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.4:7400", 0, v, 1, addrs, 8, &n), AGENT_DNSSD_WAIT);
    /* join without expect and no member: wait */
    v[0] = peer("10.0.0.1:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.4:7400", 0, v, 1, addrs, 8, &n), AGENT_DNSSD_WAIT);
    /* the same agent found twice (two interfaces) counts once */
    v[0] = peer("10.0.0.1:7400", AGENT_DNSSD_FRESH);
    v[1] = peer("10.0.0.1:7400", AGENT_DNSSD_FRESH);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 3, v, 2, addrs, 8, &n), AGENT_DNSSD_WAIT);
    CHECK_EQ_INT(agent_dnssd_decide("10.0.0.2:7400", 2, v, 2, addrs, 8, &n),
                 AGENT_DNSSD_BOOTSTRAP);
    CHECK_EQ_INT((int)n, 2);
}

int main(void)
{
    RUN(names_and_txt);
    RUN(long_names_stay_unique_labels);
    RUN(txt_limits);
    RUN(states);
    RUN(peer_records);
    RUN(decisions);
    return check_summary("test_agent_dnssd");
}
