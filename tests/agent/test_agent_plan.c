/* test_agent_plan.c - plans: created/updated/deleted/unchanged, stable
 * allocations, generation bumps only on change, retiring instances. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "plan.h"
#include "statefile.h"

static const agent_alloc alloc = { .port_min = 7100, .port_max = 7199 };

static agent_spec make_spec(size_t n, const agent_deploy *d)
{
    agent_spec s = { strdup("demo"), n, NULL };

    if (n) {
        s.d = malloc(n * sizeof(*d));
        memcpy(s.d, d, n * sizeof(*d));
    }
    return s;
}

static agent_deploy dep(const char *name, uint32_t shards, const char *version)
{
    agent_deploy d;

    memset(&d, 0, sizeof(d));
    snprintf(d.name, sizeof(d.name), "%s", name);
    snprintf(d.impl, sizeof(d.impl), "dpr-kv");
    snprintf(d.version, sizeof(d.version), "%s", version);
    d.shards = shards;
    d.checkpoint_interval_ms = 100;
    d.max_clients = 10000;
    return d;
}

static int names_eq(const agent_names *l, size_t n, const char *const *want)
{
    if (l->n != n)
        goto bad;
    for (size_t i = 0; i < n; i++)
        if (strcmp(l->v[i], want[i]) != 0)
            goto bad;
    return 1;
bad:
    fprintf(stderr, "    got [");
    for (size_t i = 0; i < l->n; i++)
        fprintf(stderr, "%s%s", i ? " " : "", l->v[i]);
    fprintf(stderr, "]\n");
    return 0;
}

/* Applies spec to *st (replacing it) and returns the plan. */
static int step(agent_state *st, const agent_spec *spec, agent_plan *plan)
{
    agent_state next;
    int rc = agent_plan_make(st, spec, &alloc, &next, plan);

    if (rc == 0) {
        agent_state_free(st);
        *st = next;
    }
    return rc;
}

/* step, for a test that needs only the state: the plan's names resumed
 * (how many) */
static size_t step_resumed(agent_state *st, const agent_spec *spec)
{
    agent_plan p;
    size_t n;

    CHECK_EQ_INT(step(st, spec, &p), 0);
    n = p.resumed.n;
    CHECK(n == 0 || strcmp(p.resumed.v[0], spec->d[0].name) == 0);
    agent_plan_free(&p);
    return n;
}

/* What layout.c records when every resize in progress is done. */
static void finish_resizes(agent_state *st)
{
    for (size_t i = 0; i < st->nlayouts; i++) {
        agent_layout *l = &st->layouts[i];
        if (!l->target_epoch)
            continue;
        l->epoch = l->target_epoch;
        l->shards = l->target_shards;
        l->target_epoch = 0;
        l->target_shards = 0;
        for (size_t k = 0; k < st->nretiring; k++)
            if (strcmp(st->retiring[k].deployment, l->deployment) == 0)
                st->retiring[k].held = false;
    }
}

static const agent_instance *inst(const agent_state *st, const char *name)
{
    int i = agent_state_find(st, name);
    return i < 0 ? NULL : &st->inst[i];
}

TEST(create_then_unchanged)
{
    agent_deploy d[2] = { dep("kv", 3, "1"), dep("b", 2, "1") };
    agent_spec s = make_spec(2, d);
    agent_state st;
    agent_plan p;
    static const char *const created[] = { "b-0", "b-1", "kv-0", "kv-1", "kv-2" };

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK(names_eq(&p.created, 5, created));
    CHECK_EQ_INT(p.updated.n + p.deleted.n + p.unchanged.n, 0);
    CHECK(agent_plan_changed(&p));
    CHECK_EQ_INT(st.generation, 1);
    CHECK_EQ_INT(st.ninst, 5);
    /* ids and ports follow the spec's order */
    CHECK_EQ_INT(inst(&st, "kv-0")->worker, 1);
    CHECK_EQ_INT(inst(&st, "kv-2")->worker, 3);
    CHECK_EQ_INT(inst(&st, "b-0")->worker, 4);
    CHECK_EQ_INT(inst(&st, "kv-0")->port, 7100);
    CHECK_EQ_INT(inst(&st, "b-1")->port, 7104);
    CHECK_EQ_INT(st.next_worker, 6);
    CHECK(strcmp(st.inst[0].name, "b-0") == 0); /* sorted */
    agent_plan_free(&p);

    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK(names_eq(&p.unchanged, 5, created));
    CHECK(!agent_plan_changed(&p));
    CHECK_EQ_INT(st.generation, 1);
    CHECK_EQ_INT(st.next_worker, 6);
    CHECK_EQ_INT(inst(&st, "kv-0")->worker, 1);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

TEST(update_fields)
{
    agent_deploy d = dep("kv", 2, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_plan p;
    static const char *const both[] = { "kv-0", "kv-1" };
    const char *fields[] = { "version", "interval", "max_clients", "impl", "maxmemory",
                             "checkpoint_mode" };

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    /* the finder committed versions of kv-0: an update keeps that */
    st.inst[0].committed = true;
    for (size_t f = 0; f < 6; f++) {
        uint64_t gen = st.generation;
        if (f == 0)
            snprintf(s.d[0].version, sizeof(s.d[0].version), "2");
        if (f == 1)
            s.d[0].checkpoint_interval_ms = 50;
        if (f == 2)
            s.d[0].max_clients = 5;
        if (f == 3)
            snprintf(s.d[0].impl, sizeof(s.d[0].impl), "other");
        if (f == 4)
            s.d[0].maxmemory = 64u << 20;
        if (f == 5)
            snprintf(s.d[0].checkpoint_mode, sizeof(s.d[0].checkpoint_mode), "full");
        CHECK_EQ_INT(step(&st, &s, &p), 0);
        int updated = names_eq(&p.updated, 2, both);

        if (!updated)
            fprintf(stderr, "    after changing %s\n", fields[f]);
        CHECK(updated);
        CHECK_EQ_INT(st.generation, gen + 1);
        CHECK_EQ_INT(inst(&st, "kv-0")->worker, 1);
        CHECK_EQ_INT(inst(&st, "kv-1")->port, 7101);
        agent_plan_free(&p);
    }
    CHECK_EQ_INT(inst(&st, "kv-1")->max_clients, 5);
    CHECK(strcmp(inst(&st, "kv-1")->impl, "other") == 0);
    CHECK(inst(&st, "kv-1")->maxmemory == 64u << 20);
    CHECK(strcmp(inst(&st, "kv-1")->checkpoint_mode, "full") == 0);
    CHECK(inst(&st, "kv-0")->committed && !inst(&st, "kv-1")->committed);
    /* the same maxmemory again: unchanged */
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.unchanged.n, 2);
    CHECK(!agent_plan_changed(&p));
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

TEST(scale_up_and_down)
{
    agent_deploy d = dep("kv", 3, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_plan p;
    static const char *const up[] = { "kv-10", "kv-11", "kv-3", "kv-4", "kv-5", "kv-6",
                                      "kv-7", "kv-8", "kv-9" };
    static const char *const down_del[] = { "kv-1", "kv-10", "kv-11", "kv-2", "kv-3", "kv-4",
                                            "kv-5", "kv-6", "kv-7", "kv-8", "kv-9" };

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    s.d[0].shards = 12;
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK(names_eq(&p.created, 9, up)); /* strcmp order */
    CHECK_EQ_INT(p.unchanged.n, 3);
    CHECK_EQ_INT(inst(&st, "kv-11")->worker, 12);
    CHECK_EQ_INT(inst(&st, "kv-11")->port, 7111);
    agent_plan_free(&p);
    finish_resizes(&st);

    s.d[0].shards = 1;
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK(names_eq(&p.deleted, 11, down_del));
    CHECK_EQ_INT(st.ninst, 1);
    CHECK_EQ_INT(st.nretiring, 11);
    CHECK_EQ_INT(st.generation, 3);
    CHECK_EQ_INT(agent_state_find_retiring(&st, "kv-5"), 6);
    agent_plan_free(&p);
    finish_resizes(&st);

    /* retiring instances keep their ports: new ones get others */
    s.d[0].shards = 2;
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(inst(&st, "kv-1")->worker, 13); /* ids are never reused */
    CHECK_EQ_INT(inst(&st, "kv-1")->port, 7112);
    CHECK(agent_state_find_retiring(&st, "kv-1") >= 0); /* still retiring too */
    agent_plan_free(&p);
    finish_resizes(&st);

    /* once retired, the port is free again */
    for (size_t i = st.nretiring; i > 0; i--)
        agent_state_drop_retiring(&st, st.retiring[i - 1].name, st.retiring[i - 1].worker);
    CHECK_EQ_INT(st.nretiring, 0);
    s.d[0].shards = 3;
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(inst(&st, "kv-2")->port, 7101);
    CHECK_EQ_INT(inst(&st, "kv-2")->worker, 14);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* A shard count change of a deployment with instances is a resize: its
 * layout record gets the target, the plan lists it, the shards it removes
 * retire held; while it runs the count cannot change again. */
TEST(resizes)
{
    agent_deploy d[2] = { dep("kv", 3, "1"), dep("b", 1, "1") };
    agent_spec s = make_spec(2, d);
    agent_state st;
    agent_plan p;
    agent_problems probs;
    const agent_layout *l;

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.nresizes, 0); /* new: no keys to move */
    l = agent_state_layout(&st, "kv");
    CHECK(l && l->epoch == 0 && l->target_epoch == 0);
    agent_plan_free(&p);
    st.layouts[0].epoch = st.layouts[1].epoch = 1; /* given by layout.c (spec order) */
    st.layouts[0].shards = 3;
    st.layouts[1].shards = 1;

    s.d[0].shards = 4; /* grow */
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.nresizes, 1);
    CHECK(strcmp(p.resizes[0].deployment, "kv") == 0);
    CHECK(p.resizes[0].from == 3 && p.resizes[0].to == 4 && p.resizes[0].epoch == 2);
    l = agent_state_layout(&st, "kv");
    CHECK(l->epoch == 1 && l->shards == 3 && l->target_epoch == 2 && l->target_shards == 4);
    CHECK(agent_resize_fraction(3, 4) == 0.25 && agent_resize_fraction(4, 2) == 0.5);
    json_t *j = agent_plan_to_json(&p);
    CHECK(json_array_size(json_object_get(j, "resizes")) == 1);
    json_decref(j);
    agent_plan_free(&p);

    /* while it runs: the same count is fine, another is refused */
    agent_problems_init(&probs);
    CHECK_EQ_INT(agent_plan_check(&st, &s, &probs), 0);
    s.d[0].shards = 2;
    CHECK_EQ_INT(agent_plan_check(&st, &s, &probs), 1);
    CHECK(strstr(probs.v[0].message, "being resized from 3 to 4 shards") != NULL);
    CHECK(strcmp(probs.v[0].where, "cachestores[0].shards") == 0);
    agent_problems_free(&probs);
    CHECK_EQ_INT(step(&st, &s, &p), -EBUSY);

    /* done; then shrink: the removed shards retire held */
    finish_resizes(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.nresizes, 1);
    CHECK(p.resizes[0].from == 4 && p.resizes[0].to == 2 && p.resizes[0].epoch == 3);
    CHECK_EQ_INT(st.nretiring, 2);
    CHECK(st.retiring[0].held && st.retiring[1].held);
    agent_plan_free(&p);

    /* deleting the deployment drops its layout; nothing is held for it */
    s.n = 1;
    memcpy(&s.d[0], &s.d[1], sizeof(s.d[0]));
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK(agent_state_layout(&st, "kv") == NULL && agent_state_layout(&st, "b") != NULL);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

TEST(delete_everything)
{
    agent_deploy d[2] = { dep("a", 1, "1"), dep("b", 1, "1") };
    agent_spec s = make_spec(2, d), empty = make_spec(0, NULL);
    agent_state st;
    agent_plan p;
    static const char *const del[] = { "a-0", "b-0" };

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK_EQ_INT(step(&st, &empty, &p), 0);
    CHECK(names_eq(&p.deleted, 2, del));
    CHECK_EQ_INT(st.ninst, 0);
    CHECK_EQ_INT(st.generation, 2);
    agent_plan_free(&p);
    CHECK_EQ_INT(step(&st, &empty, &p), 0);
    CHECK(!agent_plan_changed(&p));
    CHECK_EQ_INT(st.generation, 2);
    CHECK_EQ_INT(st.nretiring, 2); /* not duplicated */
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_spec_free(&empty);
    agent_state_free(&st);
}

TEST(port_exhaustion)
{
    agent_alloc small = { .port_min = 9000, .port_max = 9002 };
    agent_deploy d = dep("kv", 4, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st, next;
    agent_plan p;

    agent_state_init(&st);
    CHECK_EQ_INT(agent_plan_free_ports(&st, &small), 3);
    CHECK_EQ_INT(agent_plan_make(&st, &s, &small, &next, &p), -ENOSPC);
    s.d[0].shards = 3;
    CHECK_EQ_INT(agent_plan_make(&st, &s, &small, &next, &p), 0);
    CHECK_EQ_INT(agent_plan_free_ports(&next, &small), 0);
    agent_plan_free(&p);
    agent_state_free(&next);
    agent_spec_free(&s);
}

/* agent_plan_make with a's allocation, its next state replacing *st. */
static int step_with(agent_state *st, const agent_spec *spec, const agent_alloc *a)
{
    agent_state next;
    agent_plan p;
    int rc = agent_plan_make(st, spec, a, &next, &p);

    if (rc == 0) {
        agent_plan_free(&p);
        agent_state_free(st);
        *st = next;
    }
    return rc;
}

/* Metrics ports: from their own range (which may overlap the instance
 * ports' without a port given twice), kept, moved into a new range, gone
 * without one; a statefile round trip keeps them. */
TEST(metrics_ports)
{
    agent_alloc m = { .port_min = 9000, .port_max = 9009, .metrics_port_min = 9002,
                      .metrics_port_max = 9005 };
    agent_alloc off = { .port_min = 9000, .port_max = 9009 };
    agent_deploy d = dep("kv", 2, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st, next, loaded;
    agent_plan p;
    char path[] = "/tmp/test_agent_plan_XXXXXX";
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    close(fd);
    agent_state_init(&st);
    CHECK_EQ_INT(step_with(&st, &s, &m), 0);
    /* kv-0: 9000, metrics 9002; kv-1: 9001, metrics 9003 (9002 taken) */
    CHECK_EQ_INT(st.inst[0].port, 9000);
    CHECK_EQ_INT(st.inst[0].metrics_port, 9002);
    CHECK_EQ_INT(st.inst[1].port, 9001);
    CHECK_EQ_INT(st.inst[1].metrics_port, 9003);
    /* a third: its instance port skips the metrics ports */
    s.d[0].shards = 3;
    CHECK_EQ_INT(step_with(&st, &s, &m), 0);
    CHECK_EQ_INT(st.inst[0].metrics_port, 9002);
    CHECK_EQ_INT(st.inst[1].metrics_port, 9003);
    CHECK_EQ_INT(st.inst[2].port, 9004);
    CHECK_EQ_INT(st.inst[2].metrics_port, 9005);
    /* the state file keeps them */
    CHECK_EQ_INT(agent_statefile_save(path, &st, NULL), 0);
    CHECK_EQ_INT(agent_statefile_load(path, &loaded, NULL), 0);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(loaded.inst[i].metrics_port, st.inst[i].metrics_port);
    agent_state_free(&loaded);
    /* the same range: nothing changes */
    CHECK_EQ_INT(agent_plan_metrics_ports(&m, &st), 0);
    /* too small for three: nothing changes */
    m.metrics_port_min = 9020;
    m.metrics_port_max = 9021;
    CHECK_EQ_INT(agent_plan_metrics_ports(&m, &st), -ENOSPC);
    CHECK_EQ_INT(st.inst[2].metrics_port, 9005);
    /* a new range: all move in, lowest first */
    m.metrics_port_max = 9029;
    CHECK_EQ_INT(agent_plan_metrics_ports(&m, &st), 1);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(st.inst[i].metrics_port, 9020 + i);
    /* a spec needing more metrics ports than the range has: refused */
    agent_alloc one = { .port_min = 9000, .port_max = 9099, .metrics_port_min = 9100,
                        .metrics_port_max = 9100 };
    agent_state_init(&loaded);
    CHECK_EQ_INT(agent_plan_make(&loaded, &s, &one, &next, &p), -ENOSPC);
    agent_state_free(&loaded);
    /* no range: none */
    CHECK_EQ_INT(agent_plan_make(&st, &s, &off, &next, &p), 0);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(next.inst[i].metrics_port, 0);
    agent_plan_free(&p);
    agent_state_free(&next);
    agent_state_free(&st);
    agent_spec_free(&s);
    unlink(path);
}

TEST(rename_is_delete_and_create)
{
    agent_deploy d = dep("old", 1, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_plan p;

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    snprintf(s.d[0].name, sizeof(s.d[0].name), "new");
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.created.n, 1);
    CHECK_EQ_INT(p.deleted.n, 1);
    CHECK(strcmp(p.created.v[0], "new-0") == 0 && strcmp(p.deleted.v[0], "old-0") == 0);
    CHECK_EQ_INT(inst(&st, "new-0")->port, 7101);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* Issue 8: each instance gets a finder token when it is created; it keeps it
 * through updates, scaling and retirement; a new instance of the same name
 * (deleted, created again) gets a new one. */
TEST(tokens)
{
    agent_deploy d = dep("kv", 3, "1");
    agent_spec s = make_spec(1, &d), s2;
    agent_state st;
    agent_plan p;
    char t0[AGENT_TOKEN_LEN + 1], t2[AGENT_TOKEN_LEN + 1];

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    for (size_t i = 0; i < st.ninst; i++) {
        CHECK(agent_token_valid(st.inst[i].token));
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(st.inst[i].token, st.inst[k].token) != 0);
    }
    memcpy(t0, inst(&st, "kv-0")->token, sizeof(t0));
    memcpy(t2, inst(&st, "kv-2")->token, sizeof(t2));
    /* unchanged and updated instances keep theirs */
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK(strcmp(inst(&st, "kv-0")->token, t0) == 0);
    agent_spec_free(&s);
    d = dep("kv", 2, "2");
    s = make_spec(1, &d);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    CHECK_EQ_INT(p.updated.n, 2);
    agent_plan_free(&p);
    CHECK(strcmp(inst(&st, "kv-0")->token, t0) == 0);
    /* kv-2 retires with its token (the agent removes it from the finder) */
    CHECK_EQ_INT(st.nretiring, 1);
    CHECK(strcmp(st.retiring[0].token, t2) == 0);
    /* kv-2 created again: a new instance, a new worker id and token */
    agent_spec_free(&s);
    finish_resizes(&st);
    d = dep("kv", 3, "2");
    s2 = make_spec(1, &d);
    CHECK_EQ_INT(step(&st, &s2, &p), 0);
    agent_plan_free(&p);
    CHECK(agent_token_valid(inst(&st, "kv-2")->token));
    CHECK(strcmp(inst(&st, "kv-2")->token, t2) != 0);
    CHECK(strcmp(st.retiring[0].token, t2) == 0);
    agent_spec_free(&s2);
    agent_state_free(&st);
}

TEST(plan_json)
{
    agent_deploy d = dep("kv", 2, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_plan p;
    json_t *j;
    char *text;

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    j = agent_plan_to_json(&p);
    text = json_dumps(j, JSON_COMPACT);
    CHECK(strcmp(text, "{\"created\":[\"kv-0\",\"kv-1\"],\"updated\":[],\"deleted\":[],"
                       "\"unchanged\":[],\"resizes\":[]}") == 0);
    free(text);
    json_decref(j);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* Does st survive agent.json (saved, loaded: its checks pass) with ninst
 * instances and nretiring retiring ones? */
static bool reads_back(const agent_state *st, size_t ninst, size_t nretiring)
{
    char path[] = "/tmp/dpr-test-plan-XXXXXX";
    int fd = mkstemp(path);
    dpr_err err = DPR_ERR_INIT;
    agent_state back;
    bool ok;

    if (fd < 0)
        return false;
    close(fd);
    ok = agent_statefile_save(path, st, &err) == 0 && agent_statefile_load(path, &back, &err) == 0;
    if (!ok)
        fprintf(stderr, "    %s\n", err.msg);
    else {
        ok = back.ninst == ninst && back.nretiring == nretiring;
        for (size_t i = 0; ok && i < ninst; i++)
            ok = back.inst[i].worker == st->inst[i].worker &&
                 strcmp(back.inst[i].token, st->inst[i].token) == 0;
        agent_state_free(&back);
    }
    unlink(path);
    return ok;
}

/* In a cluster the plan takes only the instances placed on this node,
 * with the cluster's worker ids; another id under the same name is another
 * instance. */
TEST(placed)
{
    agent_deploy d[1] = { dep("kv", 3, "1") };
    agent_spec s = make_spec(1, d);
    agent_slot slots[3] = { { .node = "n1", .worker = 5 }, { .node = "n2", .worker = 6 }, { .node = "n1", .worker = 7 } };
    agent_placed_dep pd = { "kv", 3, slots };
    agent_placement pl = { .next_worker = 8, .n = 1, .d = &pd };
    agent_alloc here = { .port_min = 7100, .port_max = 7199, .placement = &pl, .node = "n1" };
    agent_state st, next;
    agent_plan p;
    static const char *const created[] = { "kv-0", "kv-2" };
    static const char *const recreated[] = { "kv-2" };

    agent_state_init(&st);
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(names_eq(&p.created, 2, created));
    CHECK(next.ninst == 2 && next.inst[0].worker == 5 && next.inst[1].worker == 7);
    CHECK_EQ_U64(next.next_worker, 8); /* above every id recorded (agent.json's rule) */
    CHECK(next.nlayouts == 1 && next.layouts[0].target_epoch == 0);
    agent_state_free(&st);
    st = next;
    agent_plan_free(&p);
    /* the same placement: nothing to do */
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(!agent_plan_changed(&p) && next.generation == st.generation);
    agent_state_free(&next);
    agent_plan_free(&p);
    /* kv-2 is another worker now: the old one retires, the new one starts */
    slots[2].worker = 9;
    pl.next_worker = 10;
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(names_eq(&p.created, 1, recreated) && names_eq(&p.deleted, 1, recreated));
    CHECK(next.nretiring == 1 && next.retiring[0].worker == 7 && next.inst[1].worker == 9);
    CHECK(strcmp(next.inst[1].token, st.inst[1].token) != 0);
    CHECK_EQ_U64(next.next_worker, 10);
    /* what agent.json holds reads back (its checks pass) */
    CHECK(reads_back(&next, 2, 1));
    agent_state_free(&next);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* A moved instance: the slot carries the leader's token, which the new
 * instance takes; the same worker with another token is a new incarnation
 * (it moved away and back): the old one retires beside it, and agent.json
 * still reads back. */
TEST(moved)
{
    agent_deploy d[1] = { dep("kv", 2, "1") };
    agent_spec s = make_spec(1, d);
    agent_slot slots[2] = { { .node = "n1", .worker = 5 }, { .node = "n1", .worker = 6 } };
    agent_placed_dep pd = { "kv", 2, slots };
    agent_placement pl = { .next_worker = 7, .n = 1, .d = &pd };
    agent_alloc here = { .port_min = 7100, .port_max = 7199, .placement = &pl, .node = "n1" };
    static const char tok[] = "00112233445566778899aabbccddeeff";
    static const char *const kv1[] = { "kv-1" };
    agent_state st, next;
    agent_plan p;

    agent_state_init(&st);
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(strcmp(next.inst[1].token, tok) != 0);
    agent_state_free(&st);
    agent_plan_free(&p);
    st = next;
    /* kv-1 went away to n2 and came back with the leader's token */
    snprintf(slots[1].moved_from, sizeof(slots[1].moved_from), "n2");
    memcpy(slots[1].token, tok, sizeof(tok));
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(names_eq(&p.created, 1, kv1) && names_eq(&p.deleted, 1, kv1));
    CHECK(next.ninst == 2 && strcmp(next.inst[1].token, tok) == 0 && next.inst[1].worker == 6);
    CHECK(next.nretiring == 1 && next.retiring[0].worker == 6 &&
          strcmp(next.retiring[0].token, tok) != 0);
    CHECK(next.inst[1].port != next.retiring[0].port);
    CHECK(strcmp(next.inst[0].token, st.inst[0].token) == 0); /* kv-0 untouched */
    CHECK(reads_back(&next, 2, 1));
    agent_state_free(&st);
    agent_plan_free(&p);
    st = next;
    /* the same placement again: nothing to do */
    CHECK_EQ_INT(agent_plan_make(&st, &s, &here, &next, &p), 0);
    CHECK(!agent_plan_changed(&p));
    agent_state_free(&next);
    agent_plan_free(&p);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* What each instance runs: an update leaves the processes on their old
 * settings (the roll-out moves them), the deployment's previous settings
 * are kept for undo, and an undo of a change not rolled out is no restart. */
TEST(running_settings_and_undo_record)
{
    agent_deploy d = dep("kv", 2, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_plan p;
    const agent_rollout_rec *r;

    agent_state_init(&st);
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK(st.generation == 1);
    CHECK(st.inst[0].generation == 1 && st.inst[0].run.generation == 1);
    CHECK(!agent_instance_outdated(&st.inst[0]));
    CHECK(agent_state_rollout(&st, "kv") == NULL); /* never changed */
    snprintf(s.d[0].version, sizeof(s.d[0].version), "2");
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK(st.generation == 2);
    for (size_t i = 0; i < 2; i++) {
        CHECK(st.inst[i].generation == 2 && st.inst[i].run.generation == 1);
        CHECK(strcmp(st.inst[i].run.version, "1") == 0);
        CHECK(agent_instance_outdated(&st.inst[i]));
    }
    r = agent_state_rollout(&st, "kv");
    CHECK(r && r->has_previous && strcmp(r->previous.version, "1") == 0 && !r->halted[0]);
    /* kv-0 was rolled; then a halt, then back to "1" (undo) */
    agent_instance_set_running(&st.inst[0]);
    snprintf(agent_state_rollout(&st, "kv")->halted, AGENT_HALT_REASON_MAX, "kv-0 failed");
    snprintf(s.d[0].version, sizeof(s.d[0].version), "1");
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK(st.generation == 3);
    CHECK(agent_instance_outdated(&st.inst[0]));  /* runs "2": restarted */
    CHECK(!agent_instance_outdated(&st.inst[1])); /* runs "1" already */
    CHECK(st.inst[1].run.generation == 3 && st.inst[0].run.generation == 2);
    r = agent_state_rollout(&st, "kv");
    CHECK(r && !r->halted[0] && strcmp(r->previous.version, "2") == 0);
    /* a change that does not reach the processes keeps the record as it is */
    s.d[0].rollout.paused = true;
    snprintf(agent_state_rollout(&st, "kv")->halted, AGENT_HALT_REASON_MAX, "x");
    CHECK_EQ_INT(step(&st, &s, &p), 0);
    agent_plan_free(&p);
    CHECK(st.generation == 3);
    CHECK(strcmp(agent_state_rollout(&st, "kv")->halted, "x") == 0);
    CHECK(p.resumed.n == 0);
    agent_spec_free(&s);
    agent_state_free(&st);
}

/* `rollout resume` is a new rollout.resumed in the spec: the plan lifts
 * the halt (on every node that takes it) and names the deployment, once;
 * an apply without the count keeps it (an old halt is never lifted by it
 * again); a roll-out's restart mark stays with its instance. */
TEST(resume_lifts_the_halt)
{
    agent_deploy d = dep("kv", 2, "1");
    agent_spec s = make_spec(1, &d);
    agent_state st;
    agent_rollout_rec *r;

    agent_state_init(&st);
    CHECK(step_resumed(&st, &s) == 0);
    snprintf(s.d[0].version, sizeof(s.d[0].version), "2");
    CHECK(step_resumed(&st, &s) == 0 && st.generation == 2);
    agent_instance_set_running(&st.inst[0]);
    st.inst[0].rolled_at_ms = 1234;
    r = agent_state_rollout(&st, "kv");
    snprintf(r->halted, AGENT_HALT_REASON_MAX, "kv-0 failed");
    /* the same spec: still halted */
    CHECK(step_resumed(&st, &s) == 0);
    CHECK(strcmp(agent_state_rollout(&st, "kv")->halted, "kv-0 failed") == 0);
    /* resumed: lifted, no new generation (no restart), the mark kept */
    s.d[0].rollout.resumed = 1;
    s.d[0].rollout.given = true;
    CHECK(step_resumed(&st, &s) == 1 && st.generation == 2);
    r = agent_state_rollout(&st, "kv");
    CHECK(!r->halted[0] && r->resumed == 1);
    CHECK(st.inst[0].rolled_at_ms == 1234 && st.spec.d[0].rollout.resumed == 1);
    /* halted again; an apply that leaves the count out keeps it: halted */
    snprintf(r->halted, AGENT_HALT_REASON_MAX, "kv-0 again");
    s.d[0].rollout.resumed = 0;
    CHECK(step_resumed(&st, &s) == 0 && st.spec.d[0].rollout.resumed == 1);
    CHECK(strcmp(agent_state_rollout(&st, "kv")->halted, "kv-0 again") == 0);
    /* the next count lifts it again */
    s.d[0].rollout.resumed = 2;
    CHECK(step_resumed(&st, &s) == 1 && agent_state_rollout(&st, "kv")->resumed == 2);
    agent_spec_free(&s);
    agent_state_free(&st);
}

int main(void)
{
    RUN(running_settings_and_undo_record);
    RUN(resume_lifts_the_halt);
    RUN(create_then_unchanged);
    RUN(update_fields);
    RUN(scale_up_and_down);
    RUN(resizes);
    RUN(delete_everything);
    RUN(port_exhaustion);
    RUN(metrics_ports);
    RUN(rename_is_delete_and_create);
    RUN(plan_json);
    RUN(tokens);
    RUN(placed);
    RUN(moved);
    return check_summary("test_agent_plan");
}
