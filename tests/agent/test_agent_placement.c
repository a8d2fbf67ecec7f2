/* test_agent_placement.c - where the leader puts instances (placement.h):
 * spreading, capacity, node selectors, stability, resizes, worker ids, and
 * the record's JSON. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "placement.h"

static agent_deploy dep(const char *name, uint32_t shards)
{
    agent_deploy d;

    memset(&d, 0, sizeof(d));
    snprintf(d.name, sizeof(d.name), "%s", name);
    snprintf(d.impl, sizeof(d.impl), "dpr-kv");
    snprintf(d.version, sizeof(d.version), "1");
    d.shards = shards;
    return d;
}

static agent_spec spec_of(size_t n, const agent_deploy *d)
{
    agent_spec s = { strdup("demo"), n, malloc((n ? n : 1) * sizeof(*d)) };

    memcpy(s.d, d, n * sizeof(*d));
    return s;
}

static const char *const ssd[] = { "ssd", "zone=a" };
static const char *const hdd[] = { "zone=b" };

/* n1 (ssd, zone=a), n2 (zone=b), n3 (no labels); room for 100 each */
static agent_place_node nodes3[] = {
    { "n1", ssd, 2, 100, true },
    { "n2", hdd, 1, 100, true },
    { "n3", NULL, 0, 100, true },
};

/* The nodes of d's shards, "n1 n2 n3". */
static const char *nodes_of(const agent_placement *p, const char *d)
{
    static char out[512];
    const agent_placed_dep *pd = agent_placement_find(p, d);
    size_t off = 0;

    out[0] = '\0';
    for (uint32_t s = 0; pd && s < pd->shards; s++)
        off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%s", s ? " " : "",
                                pd->slot[s].node);
    return out;
}

TEST(spread_then_stable)
{
    agent_deploy d[3] = { dep("kv", 3), dep("sessions", 3), dep("one", 1) };
    agent_spec s = spec_of(3, d);
    agent_placement empty, p, q;
    agent_problems probs;

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n1 n2 n3") == 0);
    CHECK(strcmp(nodes_of(&p, "sessions"), "n1 n2 n3") == 0);
    CHECK(strcmp(nodes_of(&p, "one"), "n1") == 0);
    /* worker ids: 1.. in spec order, never twice */
    CHECK_EQ_U64(agent_placement_find(&p, "kv")->slot[0].worker, 1);
    CHECK_EQ_U64(agent_placement_find(&p, "sessions")->slot[2].worker, 6);
    CHECK_EQ_U64(p.next_worker, 8);
    CHECK_EQ_U64(agent_placement_count(&p, "n1"), 3);
    /* placed again: nothing moves, no new ids */
    CHECK_EQ_INT(agent_place(&s, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n1 n2 n3") == 0);
    CHECK_EQ_U64(q.next_worker, 8);
    CHECK_EQ_U64(agent_placement_find(&q, "one")->slot[0].worker, 7);
    agent_placement_free(&q);
    /* a node goes down: what runs there stays placed there */
    nodes3[0].up = false;
    CHECK_EQ_INT(agent_place(&s, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n1 n2 n3") == 0);
    nodes3[0].up = true;
    CHECK_EQ_INT((int)probs.n, 0);
    agent_placement_free(&q);
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

TEST(fewest_in_all_then_name)
{
    agent_deploy d[2] = { dep("a", 1), dep("b", 2) };
    agent_spec s = spec_of(2, d);
    agent_placement empty, p;
    agent_problems probs;

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    /* a-0 on n1 (name); b's shards where the fewest run: n2, n3 */
    CHECK(strcmp(nodes_of(&p, "a"), "n1") == 0);
    CHECK(strcmp(nodes_of(&p, "b"), "n2 n3") == 0);
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

TEST(capacity)
{
    agent_place_node small[] = {
        { "n1", NULL, 0, 1, true },
        { "n2", NULL, 0, 2, true },
        { "n3", NULL, 0, 0, false }, /* down */
    };
    agent_deploy d[2] = { dep("kv", 3), dep("more", 1) };
    agent_spec s = spec_of(1, d), all = spec_of(2, d);
    agent_placement empty, p, q;
    agent_problems probs;

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, small, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n1 n2 n2") == 0);
    /* full: refused with the reason, nothing placed */
    CHECK_EQ_INT(agent_place(&all, &p, NULL, small, 3, &q, &probs), -EINVAL);
    CHECK(probs.n == 1 && strcmp(probs.v[0].where, "cachestores[1]") == 0 &&
          strstr(probs.v[0].message, "full") && strstr(probs.v[0].message, "max_instances"));
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_spec_free(&all);
    agent_problems_free(&probs);
}

TEST(selector)
{
    agent_deploy d[3] = { dep("fast", 2), dep("b", 2), dep("nowhere", 1) };
    agent_spec s, bad;
    agent_placement empty, p;
    agent_problems probs;

    d[0].selector.nlabels = 1;
    snprintf(d[0].selector.labels[0], sizeof(d[0].selector.labels[0]), "ssd");
    d[1].selector.nnodes = 2;
    snprintf(d[1].selector.nodes[0], sizeof(d[1].selector.nodes[0]), "n2");
    snprintf(d[1].selector.nodes[1], sizeof(d[1].selector.nodes[1]), "n3");
    d[2].selector.nlabels = 2;
    snprintf(d[2].selector.labels[0], sizeof(d[2].selector.labels[0]), "ssd");
    snprintf(d[2].selector.labels[1], sizeof(d[2].selector.labels[1]), "zone=b");
    s = spec_of(2, d);
    bad = spec_of(3, d);
    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    /* only n1 has ssd: both shards there (spread as far as allowed) */
    CHECK(strcmp(nodes_of(&p, "fast"), "n1 n1") == 0);
    CHECK(strcmp(nodes_of(&p, "b"), "n2 n3") == 0);
    agent_placement_free(&p);
    /* no node has both labels */
    CHECK_EQ_INT(agent_place(&bad, &empty, NULL, nodes3, 3, &p, &probs), -EINVAL);
    CHECK(probs.n == 1 && strcmp(probs.v[0].where, "cachestores[2]") == 0 &&
          strstr(probs.v[0].message, "node_selector"));
    CHECK(agent_selector_match(&d[0].selector, "x", ssd, 2));
    CHECK(!agent_selector_match(&d[0].selector, "x", hdd, 1));
    CHECK(!agent_selector_match(&d[1].selector, "n1", NULL, 0));
    agent_spec_free(&s);
    agent_spec_free(&bad);
    agent_problems_free(&probs);
}

TEST(resizes)
{
    agent_deploy one[1] = { dep("kv", 2) };
    agent_spec s = spec_of(1, one), more, spread, fewer;
    agent_placement empty, p, q;
    agent_problems probs;

    one[0].selector.nnodes = 1;
    snprintf(one[0].selector.nodes[0], sizeof(one[0].selector.nodes[0]), "n2");
    agent_spec_free(&s);
    s = spec_of(1, one);
    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n2 n2") == 0);
    /* a deployment on one node grows there, shrinks there */
    one[0].shards = 4;
    more = spec_of(1, one);
    CHECK_EQ_INT(agent_place(&more, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n2 n2 n2 n2") == 0);
    CHECK_EQ_U64(agent_placement_find(&q, "kv")->slot[3].worker, 4);
    agent_placement_free(&q);
    one[0].shards = 1;
    fewer = spec_of(1, one);
    CHECK_EQ_INT(agent_place(&fewer, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n2") == 0);
    CHECK_EQ_U64(q.next_worker, 3); /* ids of removed shards are not handed out again */
    agent_placement_free(&q);
    agent_placement_free(&p);
    /* a spread deployment's shard count cannot change */
    one[0].selector.nnodes = 0;
    one[0].shards = 3;
    spread = spec_of(1, one);
    CHECK_EQ_INT(agent_place(&spread, &empty, NULL, nodes3, 3, &p, &probs), 0);
    CHECK_EQ_INT(agent_place(&more, &p, NULL, nodes3, 3, &q, &probs), -EINVAL);
    CHECK(probs.n == 1 && strcmp(probs.v[0].where, "cachestores[0].shards") == 0 &&
          strstr(probs.v[0].message, "several nodes"));
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_spec_free(&more);
    agent_spec_free(&fewer);
    agent_spec_free(&spread);
    agent_problems_free(&probs);
}

TEST(deleted_and_no_nodes)
{
    agent_deploy d[2] = { dep("a", 1), dep("b", 1) };
    agent_spec both = spec_of(2, d), only_b = spec_of(1, &d[1]);
    agent_placement empty, p, q;
    agent_problems probs;

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&both, &empty, NULL, nodes3, 3, &p, &probs), 0);
    CHECK_EQ_INT(agent_place(&only_b, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(q.n == 1 && agent_placement_find(&q, "a") == NULL);
    CHECK_EQ_U64(agent_placement_find(&q, "b")->slot[0].worker, 2);
    agent_placement_free(&q);
    agent_placement_free(&p);
    /* no node known yet */
    CHECK_EQ_INT(agent_place(&both, &empty, NULL, NULL, 0, &p, &probs), -EINVAL);
    CHECK(probs.n == 2 && strstr(probs.v[0].message, "no node is up"));
    agent_spec_free(&both);
    agent_spec_free(&only_b);
    agent_problems_free(&probs);
}

TEST(json)
{
    agent_deploy d[2] = { dep("kv", 3), dep("one", 1) };
    agent_spec s = spec_of(2, d);
    agent_placement empty, p, back;
    agent_problems probs;
    json_t *j, *k;
    static const char *const bad[] = {
        "{\"next_worker\": 2, \"deployments\": {\"kv\": \"n1\"}}",
        "{\"next_worker\": 2, \"deployments\": {\"kv\": []}}",
        "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", \"worker\": 2}]}}",
        "{\"next_worker\": 3, \"deployments\": {\"kv\": [{\"node\": \"n1\", \"worker\": 1},"
        " {\"node\": \"n2\", \"worker\": 1}]}}",
        "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n 1\", \"worker\": 1}]}}",
        "{\"next_worker\": 2, \"deployments\": {\"Kv\": [{\"node\": \"n1\", \"worker\": 1}]}}",
        "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", \"worker\": 0}]}}",
        "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", \"worker\": 1, "
        "\"x\": 1}]}}",
        "{\"next_worker\": 0, \"deployments\": {}}",
        "{\"deployments\": {}}",
        "{\"next_worker\": 1, \"deployments\": {}, \"more\": 1}",
        "[]",
    };

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    j = agent_placement_to_json(&p);
    CHECK_EQ_INT(agent_placement_from_json(j, &back), 0);
    k = agent_placement_to_json(&back);
    CHECK(json_equal(j, k));
    CHECK(strcmp(nodes_of(&back, "kv"), "n1 n2 n3") == 0 && back.next_worker == 5);
    json_decref(j);
    json_decref(k);
    agent_placement_free(&back);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i], 0, NULL);
        if (agent_placement_from_json(j, &back) != -EINVAL) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            CHECK(0);
        }
        json_decref(j);
    }
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

/* A node that ran a deployment before it joined keeps it, with its ids. */
TEST(running_before)
{
    agent_deploy d[2] = { dep("kv", 2), dep("own", 2) };
    agent_spec s = spec_of(2, d);
    agent_slot was[2] = { { .node = "n3", .worker = 4 }, { .node = "n3", .worker = 9 } };
    agent_placed_dep run = { "own", 2, was };
    agent_placement running = { .next_worker = 10, .n = 1, .d = &run }, empty, p;
    agent_problems probs;

    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, &running, nodes3, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "own"), "n3 n3") == 0);
    CHECK_EQ_U64(agent_placement_find(&p, "own")->slot[1].worker, 9);
    /* kv spreads where least runs: n1, n2 (n3 has two) */
    CHECK(strcmp(nodes_of(&p, "kv"), "n1 n2") == 0);
    CHECK_EQ_U64(p.next_worker, 12); /* above the ids taken over */
    agent_placement_free(&p);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

/* A node marked down takes nothing new; the list is kept and read back. */
TEST(down)
{
    agent_deploy d[1] = { dep("kv", 3) };
    agent_spec s = spec_of(1, d);
    agent_placement cur, p, back;
    agent_problems probs;
    const char *const down[] = { "n2", "n1", "n2" };
    json_t *j;

    agent_placement_init(&cur);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_placement_set_down(&cur, down, 3), 0);
    CHECK(cur.ndown == 2 && strcmp(cur.down[0], "n1") == 0);
    CHECK(agent_placement_is_down(&cur, "n2") && !agent_placement_is_down(&cur, "n3"));
    CHECK_EQ_INT(agent_place(&s, &cur, NULL, nodes3, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n3 n3 n3") == 0);
    CHECK(p.ndown == 2);
    j = agent_placement_to_json(&p);
    CHECK(json_array_size(json_object_get(j, "down")) == 2);
    CHECK_EQ_INT(agent_placement_from_json(j, &back), 0);
    CHECK(back.ndown == 2 && agent_placement_is_down(&back, "n1"));
    json_decref(j);
    agent_placement_free(&back);
    /* duplicates and bad names are refused */
    j = json_loads("{\"next_worker\": 1, \"deployments\": {}, \"down\": [\"a\", \"a\"]}",
                   0, NULL);
    CHECK_EQ_INT(agent_placement_from_json(j, &back), -EINVAL);
    json_decref(j);
    j = json_loads("{\"next_worker\": 1, \"deployments\": {}, \"down\": [\"a b\"]}", 0, NULL);
    CHECK_EQ_INT(agent_placement_from_json(j, &back), -EINVAL);
    json_decref(j);
    agent_placement_free(&p);
    /* every node down: nowhere to go */
    nodes3[2].up = false;
    CHECK_EQ_INT(agent_place(&s, &cur, NULL, nodes3, 3, &p, &probs), -EINVAL);
    nodes3[2].up = true;
    CHECK(probs.n == 1 && strstr(probs.v[0].message, "no node is up"));
    agent_placement_free(&cur);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

/* The replicas of each slot as "n2,n3 n1 ..." */
static const char *replicas_of(const agent_placement *p, const char *d)
{
    static char out[512];
    const agent_placed_dep *pd = agent_placement_find(p, d);
    size_t off = 0;

    out[0] = '\0';
    for (uint32_t s = 0; pd && s < pd->shards; s++) {
        off += (size_t)snprintf(out + off, sizeof(out) - off, "%s", s ? " " : "");
        for (unsigned r = 0; r < pd->slot[s].nreplicas; r++)
            off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%s", r ? "," : "",
                                    pd->slot[s].replica[r]);
        if (!pd->slot[s].nreplicas)
            off += (size_t)snprintf(out + off, sizeof(out) - off, "-");
    }
    return out;
}

TEST(replicas)
{
    agent_deploy d[3] = { dep("kv", 3), dep("two", 1), dep("pinned", 1) };
    agent_spec s, bad;
    agent_placement empty, p, q;
    agent_problems probs;
    json_t *j;
    int want;

    d[0].replicas = AGENT_REPLICAS_AUTO;
    d[1].replicas = 2;
    d[2].replicas = AGENT_REPLICAS_AUTO;
    d[2].selector.nnodes = 1;
    snprintf(d[2].selector.nodes[0], sizeof(d[2].selector.nodes[0]), "n2");
    s = spec_of(3, d);
    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, nodes3, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n1 n2 n3") == 0);
    /* auto: one copy elsewhere, spread by how many copies a node holds */
    CHECK(strcmp(replicas_of(&p, "kv"), "n2 n1 n1") == 0);
    CHECK(strcmp(nodes_of(&p, "two"), "n1") == 0);
    CHECK(strcmp(replicas_of(&p, "two"), "n3,n2") == 0);
    /* auto with one matching node: none */
    CHECK(strcmp(replicas_of(&p, "pinned"), "-") == 0);
    CHECK_EQ_INT((int)agent_placement_replicas_short(&p, &s.d[0], nodes3, 3, &want), 0);
    CHECK_EQ_INT(want, 1);
    /* written and read back */
    j = agent_placement_to_json(&p);
    CHECK_EQ_INT(agent_placement_from_json(j, &q), 0);
    CHECK(strcmp(replicas_of(&q, "two"), "n3,n2") == 0);
    json_decref(j);
    agent_placement_free(&q);
    /* n1 down: what ran there moves to its replica (kv-0 to n2, "two" to
     * n3, the replica with fewer instances), and the copies it held move
     * (kv-1's to n3) */
    {
        const char *down[] = { "n1" };
        CHECK_EQ_INT(agent_placement_set_down(&p, down, 1), 0);
    }
    CHECK_EQ_INT(agent_place(&s, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n2 n2 n3") == 0);
    CHECK(strcmp(replicas_of(&q, "kv"), "n3 n3 n2") == 0);
    CHECK(strcmp(nodes_of(&q, "two"), "n3") == 0);
    CHECK(strcmp(agent_placement_find(&q, "kv")->slot[0].moved_from, "n1") == 0);
    CHECK(agent_placement_find(&q, "kv")->slot[1].moved_from[0] == '\0');
    CHECK_EQ_INT((int)agent_placement_moved_untokened(&q), 2);
    agent_placement_free(&q);
    /* n2 and n3 down: kv-1 and kv-2 move to n1; kv-0 has no copy on a live
     * node and waits for n1 (nothing to restore elsewhere) */
    {
        const char *down[] = { "n2", "n3" };
        CHECK_EQ_INT(agent_placement_set_down(&p, down, 2), 0);
    }
    CHECK_EQ_INT(agent_place(&s, &p, NULL, nodes3, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n1 n1 n1") == 0);
    CHECK_EQ_INT((int)agent_placement_replicas_short(&q, &s.d[0], nodes3, 3, &want), 3);
    CHECK(strcmp(replicas_of(&q, "kv"), "- - -") == 0);
    agent_placement_free(&q);
    agent_placement_free(&p);
    /* an explicit count the selector can never give */
    d[1].replicas = 2;
    d[1].selector.nnodes = 2;
    snprintf(d[1].selector.nodes[0], sizeof(d[1].selector.nodes[0]), "n1");
    snprintf(d[1].selector.nodes[1], sizeof(d[1].selector.nodes[1]), "n3");
    bad = spec_of(2, d);
    CHECK_EQ_INT(agent_place(&bad, &empty, NULL, nodes3, 3, &p, &probs), -EINVAL);
    CHECK(probs.n == 1 && strcmp(probs.v[0].where, "cachestores[1].replicas") == 0 &&
          strstr(probs.v[0].message, "need 3 nodes"));
    agent_spec_free(&s);
    agent_spec_free(&bad);
    agent_problems_free(&probs);
}

/* Moves off a lost node: to a replica that has room and matches; none: it
 * waits; the token the leader gives survives the record's JSON; a moved
 * instance stays where it went when its old node comes back. */
TEST(moves)
{
    agent_deploy d[1] = { dep("kv", 3) };
    agent_place_node small[3] = {
        { "n1", NULL, 0, 100, true },
        { "n2", NULL, 0, 1, true },   /* room for one */
        { "n3", NULL, 0, 100, true },
    };
    agent_spec s;
    agent_placement empty, p, q, back;
    agent_problems probs;
    const char *down[] = { "n1" };
    json_t *j;

    d[0].replicas = 1;
    s = spec_of(1, d);
    agent_placement_init(&empty);
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_place(&s, &empty, NULL, small, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n1 n2 n3") == 0);
    CHECK(strcmp(replicas_of(&p, "kv"), "n2 n1 n1") == 0);
    CHECK_EQ_INT((int)agent_placement_moved_untokened(&p), 0);
    /* n1 down: kv-0's replica n2 is full, so kv-0 waits (the copies n1
     * held move) */
    CHECK_EQ_INT(agent_placement_set_down(&p, down, 1), 0);
    CHECK_EQ_INT(agent_place(&s, &p, NULL, small, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n1 n2 n3") == 0);
    CHECK(strcmp(replicas_of(&q, "kv"), "n2 n3 n2") == 0);
    agent_placement_free(&q);
    /* with room on n2 it moves there, and gets a new replica (n3) */
    small[1].max_instances = 2;
    CHECK_EQ_INT(agent_place(&s, &p, NULL, small, 3, &q, &probs), 0);
    CHECK(strcmp(nodes_of(&q, "kv"), "n2 n2 n3") == 0);
    CHECK(strcmp(replicas_of(&q, "kv"), "n3 n3 n2") == 0);
    CHECK_EQ_INT((int)agent_placement_moved_untokened(&q), 1);
    /* the leader's token, through JSON */
    snprintf(agent_placement_find(&q, "kv")->slot[0].token, AGENT_TOKEN_LEN + 1, "%s",
             "0123456789abcdef0123456789abcdef");
    j = agent_placement_to_json(&q);
    CHECK(j && strcmp(json_string_value(json_object_get(json_array_get(json_object_get(
                  json_object_get(j, "deployments"), "kv"), 0), "moved_from")), "n1") == 0);
    CHECK_EQ_INT(agent_placement_from_json(j, &back), 0);
    CHECK(strcmp(agent_placement_find(&back, "kv")->slot[0].token,
                 "0123456789abcdef0123456789abcdef") == 0);
    CHECK_EQ_INT((int)agent_placement_moved_untokened(&back), 0);
    json_decref(j);
    /* n1 back: the moved instance stays on n2, with its token */
    CHECK_EQ_INT(agent_placement_set_down(&back, NULL, 0), 0);
    agent_placement_free(&p);
    CHECK_EQ_INT(agent_place(&s, &back, NULL, small, 3, &p, &probs), 0);
    CHECK(strcmp(nodes_of(&p, "kv"), "n2 n2 n3") == 0);
    CHECK(strcmp(agent_placement_find(&p, "kv")->slot[0].token,
                 "0123456789abcdef0123456789abcdef") == 0);
    /* a token without moved_from, or a malformed one, is no record */
    {
        static const char *const bad[] = {
            "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", "
            "\"worker\": 1, \"token\": \"0123456789abcdef0123456789abcdef\"}]}}",
            "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", "
            "\"worker\": 1, \"moved_from\": \"n2\", \"token\": \"XYZ\"}]}}",
            "{\"next_worker\": 2, \"deployments\": {\"kv\": [{\"node\": \"n1\", "
            "\"worker\": 1, \"moved_from\": \"not a name\"}]}}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            agent_placement x;
            j = json_loads(bad[i], 0, NULL);
            CHECK(j != NULL);
            CHECK_EQ_INT(agent_placement_from_json(j, &x), -EINVAL);
            json_decref(j);
        }
    }
    CHECK(probs.n == 0);
    agent_placement_free(&p);
    agent_placement_free(&q);
    agent_placement_free(&back);
    agent_spec_free(&s);
    agent_problems_free(&probs);
}

int main(void)
{
    RUN(spread_then_stable);
    RUN(fewest_in_all_then_name);
    RUN(capacity);
    RUN(selector);
    RUN(resizes);
    RUN(deleted_and_no_nodes);
    RUN(json);
    RUN(running_before);
    RUN(down);
    RUN(replicas);
    RUN(moves);
    return check_summary("test_agent_placement");
}
