/* test_agent_cstate.c - the replicated cluster state's entries and
 * snapshots (cstate.h): round trips, c-raft's 8-byte sizes, and every kind
 * of damage refused with the state left as it was. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cstate.h"

static const char image[] = "DPRFIND\0 a finder image, opaque here";

static int apply_buf(agent_cstate *cs, const dpr_buf *b)
{
    return agent_cstate_apply(cs, b->data, b->len, NULL);
}

TEST(entry_round_trip)
{
    agent_cstate cs;
    dpr_buf b;

    agent_cstate_init(&cs);
    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, image, sizeof(image), &b),
                 0);
    CHECK(b.len % 8 == 0); /* c-raft's log wants it */
    CHECK_EQ_INT(apply_buf(&cs, &b), 0);
    CHECK(cs.finder_len == sizeof(image) && memcmp(cs.finder, image, sizeof(image)) == 0);
    CHECK(cs.changes == 1);
    /* a later entry replaces the state */
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, "x", 1, &b), 0);
    CHECK_EQ_INT(apply_buf(&cs, &b), 0);
    CHECK(cs.finder_len == 1 && cs.finder[0] == 'x' && cs.changes == 2);
    dpr_buf_free(&b);
    agent_cstate_free(&cs);
}

TEST(every_payload_size_pads_to_eight)
{
    agent_cstate cs;
    dpr_buf b;
    char p[40];

    memset(p, 'a', sizeof(p));
    agent_cstate_init(&cs);
    dpr_buf_init(&b);
    for (size_t n = 1; n < sizeof(p); n++) {
        CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, p, n, &b), 0);
        CHECK(b.len % 8 == 0);
        CHECK_EQ_INT(apply_buf(&cs, &b), 0);
        CHECK(cs.finder_len == n);
    }
    dpr_buf_free(&b);
    agent_cstate_free(&cs);
}

TEST(damage_is_refused_and_changes_nothing)
{
    agent_cstate cs;
    dpr_buf b;

    agent_cstate_init(&cs);
    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, image, sizeof(image), &b),
                 0);
    for (size_t i = 0; i < b.len; i++) {
        dpr_err err = DPR_ERR_INIT;
        b.data[i] ^= 0x20;
        int rc = agent_cstate_apply(&cs, b.data, b.len, &err);
        CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT);
        CHECK(err.msg[0] != '\0');
        b.data[i] ^= 0x20;
    }
    for (size_t n = 0; n < b.len - 8; n++) /* (the last 8 may be padding) */
        CHECK_EQ_INT(agent_cstate_apply(&cs, b.data, n, NULL), -EBADMSG);
    CHECK(cs.finder == NULL && cs.changes == 0);
    dpr_buf_free(&b);
    agent_cstate_free(&cs);
}

TEST(unknown_type_and_format_are_refused)
{
    agent_cstate cs;
    dpr_buf b;
    dpr_err err = DPR_ERR_INIT;

    agent_cstate_init(&cs);
    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_cstate_entry_encode(9, image, sizeof(image), &b), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, b.data, b.len, &err), -EPROTONOSUPPORT);
    CHECK(strstr(err.msg, "unknown type 9") != NULL);
    CHECK(cs.finder == NULL);
    dpr_buf_free(&b);
    agent_cstate_free(&cs);
}

TEST(snapshot_round_trip)
{
    agent_cstate cs, back;
    dpr_buf b, e;

    agent_cstate_init(&cs);
    agent_cstate_init(&back);
    dpr_buf_init(&b);
    dpr_buf_init(&e);
    /* an empty state too */
    CHECK_EQ_INT(agent_cstate_snapshot(&cs, &b), 0);
    CHECK_EQ_INT(agent_cstate_restore(&back, b.data, b.len, NULL), 0);
    CHECK(back.finder == NULL && back.changes == 1);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, image, sizeof(image), &e),
                 0);
    CHECK_EQ_INT(apply_buf(&cs, &e), 0);
    CHECK_EQ_INT(agent_cstate_snapshot(&cs, &b), 0);
    CHECK_EQ_INT(agent_cstate_restore(&back, b.data, b.len, NULL), 0);
    CHECK(back.finder_len == sizeof(image) && memcmp(back.finder, image, sizeof(image)) == 0);
    for (size_t i = 0; i < b.len; i++) {
        b.data[i] ^= 1;
        int rc = agent_cstate_restore(&back, b.data, b.len, NULL);
        CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT);
        b.data[i] ^= 1;
    }
    CHECK(back.finder_len == sizeof(image)); /* unchanged by the refusals */
    /* an entry is not a snapshot */
    CHECK_EQ_INT(agent_cstate_restore(&back, e.data, e.len, NULL), -EBADMSG);
    dpr_buf_free(&b);
    dpr_buf_free(&e);
    agent_cstate_free(&cs);
    agent_cstate_free(&back);
}

static agent_cstate_node node(uint64_t id, const char *name)
{
    agent_cstate_node n;

    memset(&n, 0, sizeof(n));
    n.id = id;
    snprintf(n.name, sizeof(n.name), "%s", name);
    snprintf(n.raft, sizeof(n.raft), "10.0.0.%llu:7400", (unsigned long long)id);
    snprintf(n.finder, sizeof(n.finder), "10.0.0.%llu:7000", (unsigned long long)id);
    return n;
}

static int apply_node(agent_cstate *cs, const agent_cstate_node *n, dpr_buf *p, dpr_buf *e)
{
    if (agent_cstate_node_payload(n, p) < 0)
        return -EINVAL;
    if (agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_NODE, p->data, p->len, e) < 0)
        return -ENOMEM;
    return agent_cstate_apply(cs, e->data, e->len, NULL);
}

TEST(node_table)
{
    agent_cstate cs, back;
    dpr_buf p, e;
    agent_cstate_node n3 = node(3, "node3"), n1 = node(1, "node1"), bad = node(2, "no spaces");
    unsigned char gone[8] = { 3 };

    agent_cstate_init(&cs);
    agent_cstate_init(&back);
    dpr_buf_init(&p);
    dpr_buf_init(&e);
    CHECK_EQ_INT(apply_node(&cs, &n3, &p, &e), 0);
    CHECK_EQ_INT(apply_node(&cs, &n1, &p, &e), 0);
    CHECK(cs.nnodes == 2 && cs.nodes[0].id == 1 && cs.nodes[1].id == 3); /* sorted */
    CHECK(strcmp(agent_cstate_node_find(&cs, 3)->finder, "10.0.0.3:7000") == 0);
    CHECK(agent_cstate_node_named(&cs, "node1")->id == 1);
    CHECK(agent_cstate_node_named(&cs, "node2") == NULL);
    /* a record of the same id replaces the old one */
    snprintf(n3.name, sizeof(n3.name), "renamed");
    CHECK_EQ_INT(apply_node(&cs, &n3, &p, &e), 0);
    CHECK(cs.nnodes == 2 && strcmp(agent_cstate_node_find(&cs, 3)->name, "renamed") == 0);
    CHECK_EQ_INT(apply_node(&cs, &bad, &p, &e), -EINVAL);
    /* in a snapshot and back */
    CHECK_EQ_INT(agent_cstate_snapshot(&cs, &p), 0);
    CHECK_EQ_INT(agent_cstate_restore(&back, p.data, p.len, NULL), 0);
    CHECK(back.nnodes == 2 && strcmp(back.nodes[1].name, "renamed") == 0);
    /* gone */
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_NODE_GONE, gone, 8, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK(cs.nnodes == 1 && agent_cstate_node_find(&cs, 3) == NULL);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_NODE_GONE, gone, 7, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), -EBADMSG);
    dpr_buf_free(&p);
    dpr_buf_free(&e);
    agent_cstate_free(&cs);
    agent_cstate_free(&back);
}

TEST(spec_record)
{
    agent_cstate cs, back;
    dpr_buf p, e;
    json_t *spec = json_pack("{s:s, s:[]}", "name", "demo", "cachestores");
    json_t *placement = json_pack("{s:i, s:{s:[{s:s, s:i}]}}", "next_worker", 2, "deployments",
                                  "kv", "node", "node1", "worker", 1);
    json_t *bad = json_pack("{s:s}", "kv", "node1"); /* (the format before placement.h) */

    agent_cstate_init(&cs);
    agent_cstate_init(&back);
    dpr_buf_init(&p);
    dpr_buf_init(&e);
    CHECK_EQ_INT(agent_cstate_spec_payload(7, spec, placement, &p), 0);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_SPEC, p.data, p.len, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK(cs.spec_generation == 7 && cs.spec && strstr(cs.spec, "\"node1\""));
    /* kept by a snapshot */
    CHECK_EQ_INT(agent_cstate_snapshot(&cs, &p), 0);
    CHECK_EQ_INT(agent_cstate_restore(&back, p.data, p.len, NULL), 0);
    CHECK(back.spec_generation == 7 && back.spec_len == cs.spec_len);
    /* refused: generation 0, a placement that is not one, not JSON */
    CHECK_EQ_INT(agent_cstate_spec_payload(0, spec, placement, &p), -EINVAL);
    CHECK_EQ_INT(agent_cstate_spec_payload(8, spec, bad, &p), -EINVAL);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_SPEC, "{nope", 5, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), -EBADMSG);
    CHECK(cs.spec_generation == 7);
    json_decref(spec);
    json_decref(placement);
    json_decref(bad);
    dpr_buf_free(&p);
    dpr_buf_free(&e);
    agent_cstate_free(&cs);
    agent_cstate_free(&back);
}

TEST(instance_records)
{
    agent_cstate cs, back;
    dpr_buf e, snap;
    const char *n1 = "{\"deployments\":[{\"name\":\"kv\"}],\"node\":\"n1\"}";
    const char *n2 = "{\"deployments\":[],\"node\":\"n2\"}";
    unsigned char gone[8] = { 9 };
    agent_cstate_node node9 = node(9, "n2");

    agent_cstate_init(&cs);
    agent_cstate_init(&back);
    dpr_buf_init(&e);
    dpr_buf_init(&snap);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_INSTANCES, n2, strlen(n2), &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_INSTANCES, n1, strlen(n1), &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK(cs.ninsts == 2 && strcmp(cs.insts[0].node, "n1") == 0); /* sorted by node */
    CHECK(strcmp(agent_cstate_insts_of(&cs, "n1"), n1) == 0);
    CHECK(agent_cstate_insts_of(&cs, "n3") == NULL);
    CHECK_EQ_INT(agent_cstate_snapshot(&cs, &snap), 0);
    CHECK_EQ_INT(agent_cstate_restore(&back, snap.data, snap.len, NULL), 0);
    CHECK(back.ninsts == 2 && strcmp(agent_cstate_insts_of(&back, "n2"), n2) == 0);
    /* refused: no node, not JSON */
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_INSTANCES, "{}", 2, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), -EBADMSG);
    /* a node gone takes its record along */
    CHECK_EQ_INT(agent_cstate_node_payload(&node9, &snap), 0);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_NODE, snap.data, snap.len, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK_EQ_INT(agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_NODE_GONE, gone, 8, &e), 0);
    CHECK_EQ_INT(agent_cstate_apply(&cs, e.data, e.len, NULL), 0);
    CHECK(cs.ninsts == 1 && agent_cstate_insts_of(&cs, "n2") == NULL);
    dpr_buf_free(&e);
    dpr_buf_free(&snap);
    agent_cstate_free(&cs);
    agent_cstate_free(&back);
}

int main(void)
{
    RUN(entry_round_trip);
    RUN(every_payload_size_pads_to_eight);
    RUN(damage_is_refused_and_changes_nothing);
    RUN(unknown_type_and_format_are_refused);
    RUN(snapshot_round_trip);
    RUN(node_table);
    RUN(spec_record);
    RUN(instance_records);
    return check_summary("cstate");
}
