/* test_agent_state.c - the agent's state file (round trip, damage is an
 * error naming the problem, lock) and instance environment files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "envfile.h"
#include "plan.h"
#include "statefile.h"

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/dpr-test-agent-state-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void rm_rf(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  cleanup failed\n");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (len)
        fwrite(data, 1, len, f);
    fclose(f);
}

/* A state with two deployments, one retiring instance. */
static void sample(agent_state *st)
{
    static const agent_alloc alloc = { .port_min = 7100, .port_max = 7199 };
    agent_deploy d[2];
    agent_spec s = { strdup("demo"), 2, d }, s2;
    agent_state a, b;
    agent_plan p;

    memset(d, 0, sizeof(d));
    for (int i = 0; i < 2; i++) {
        snprintf(d[i].name, sizeof(d[i].name), i ? "b" : "kv");
        snprintf(d[i].impl, sizeof(d[i].impl), "dpr-kv");
        snprintf(d[i].version, sizeof(d[i].version), "1.%d", i);
        d[i].shards = 2 + (uint32_t)i;
        d[i].checkpoint_interval_ms = 100;
        d[i].max_clients = 10000;
        d[i].maxmemory = i ? 64u << 20 : 0;
        if (i)
            snprintf(d[i].checkpoint_mode, sizeof(d[i].checkpoint_mode), "full");
        if (i)
            snprintf(d[i].tls_clients, sizeof(d[i].tls_clients), "optional");
    }
    agent_state_init(&a);
    agent_plan_make(&a, &s, &alloc, &b, &p);
    agent_plan_free(&p);
    s.n = 1;
    s.d = &d[1];
    agent_spec_copy(&s, &s2);
    agent_plan_make(&b, &s2, &alloc, st, &p);
    agent_plan_free(&p);
    /* a resize in progress: its record and a retiring shard held for it */
    st->layouts[0].epoch = 4;
    st->layouts[0].shards = 6;
    st->layouts[0].target_epoch = 5;
    st->layouts[0].target_shards = 3;
    st->retiring[1].held = true;
    agent_state_free(&b);
    agent_spec_free(&s2);
    free(s.name);
}

TEST(round_trip)
{
    char path[128];
    dpr_err err;
    agent_state st, back;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    sample(&st);
    CHECK_EQ_INT(st.ninst, 3);
    CHECK_EQ_INT(st.nretiring, 2);
    CHECK_EQ_INT(agent_statefile_load(path, &back, &err), -ENOENT);
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK(access(path, F_OK) == 0);
    CHECK_EQ_INT(agent_statefile_load(path, &back, &err), 0);
    CHECK_EQ_INT(back.generation, st.generation);
    CHECK_EQ_INT(back.next_worker, st.next_worker);
    CHECK_EQ_INT(back.ninst, st.ninst);
    CHECK_EQ_INT(back.nretiring, st.nretiring);
    CHECK(memcmp(back.inst, st.inst, st.ninst * sizeof(*st.inst)) == 0);
    CHECK(back.inst[0].maxmemory == 64u << 20 && back.retiring[0].maxmemory == 0);
    CHECK(strcmp(back.inst[0].checkpoint_mode, "full") == 0 &&
          strcmp(back.inst[0].run.checkpoint_mode, "full") == 0 &&
          back.retiring[0].checkpoint_mode[0] == '\0');
    CHECK(strcmp(back.inst[0].tls_clients, "optional") == 0 &&
          strcmp(back.inst[0].run.tls_clients, "optional") == 0 &&
          back.retiring[0].tls_clients[0] == '\0');
    CHECK(!back.inst[0].committed);
    CHECK(memcmp(back.retiring, st.retiring, st.nretiring * sizeof(*st.retiring)) == 0);
    CHECK(strcmp(back.spec.name, "demo") == 0);
    CHECK_EQ_INT(back.spec.n, 1);
    CHECK_EQ_INT(back.nlayouts, 1);
    CHECK(memcmp(back.layouts, st.layouts, sizeof(*st.layouts)) == 0);
    CHECK(back.retiring[1].held && !back.retiring[0].held);
    agent_state_free(&back);

    /* an empty state (no spec yet) round-trips too */
    agent_state_free(&st);
    agent_state_init(&st);
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK_EQ_INT(agent_statefile_load(path, &back, &err), 0);
    CHECK(back.spec.name == NULL);
    CHECK_EQ_INT(back.next_worker, 1);
    agent_state_free(&back);
    agent_state_free(&st);
    rm_rf();
}

TEST(every_truncation_is_an_error)
{
    char path[128];
    dpr_err err;
    agent_state st, back;
    size_t len;
    char *good;
    int bad = 0;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    sample(&st);
    agent_statefile_save(path, &st, &err);
    good = slurp(path, &len);
    for (size_t n = 0; n + 2 < len; n++) {
        spit(path, good, n);
        int rc = agent_statefile_load(path, &back, &err);
        if (rc == 0) {
            agent_state_free(&back);
            bad++;
        } else if (rc != -EBADMSG || !strstr(err.msg, "is damaged")) {
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    free(good);
    agent_state_free(&st);
    rm_rf();
}

/* Replaces the first occurrence of from with to in the saved file, loads it. */
static int load_edited(const char *from, const char *to, dpr_err *err)
{
    char path[128], *text, *at, *edited;
    agent_state st, back;
    size_t len;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    sample(&st);
    agent_statefile_save(path, &st, err);
    agent_state_free(&st);
    text = slurp(path, &len);
    at = strstr(text, from);
    if (!at) {
        fprintf(stderr, "    '%s' not in the state file\n", from);
        free(text);
        return -999;
    }
    edited = malloc(len + strlen(to) + 1);
    memcpy(edited, text, (size_t)(at - text));
    strcpy(edited + (at - text), to);
    strcat(edited, at + strlen(from));
    spit(path, edited, strlen(edited));
    free(text);
    free(edited);
    rc = agent_statefile_load(path, &back, err);
    if (rc == 0)
        agent_state_free(&back);
    return rc;
}

TEST(inconsistent_content_is_an_error)
{
    dpr_err err;

    make_dir();
    CHECK_EQ_INT(load_edited("\"format\": 1", "\"format\": 2", &err), -EBADMSG);
    CHECK(strstr(err.msg, "format 2") != NULL);
    CHECK_EQ_INT(load_edited("\"port\": 7100", "\"port\": 0", &err), -EBADMSG);
    CHECK(strstr(err.msg, ".port") != NULL);
    CHECK_EQ_INT(load_edited("\"port\": 7100", "\"port\": 7101", &err), -EBADMSG);
    CHECK(strstr(err.msg, "share") != NULL);
    CHECK_EQ_INT(load_edited("\"shards\": 3", "\"shards\": 4", &err), -EBADMSG);
    CHECK(strstr(err.msg, "implies 4 instances") != NULL);
    CHECK_EQ_INT(load_edited("\"version\": \"1.1\",", "\"version\": \"9\",", &err), -EBADMSG);
    CHECK(strstr(err.msg, "does not match the recorded spec") != NULL);
    CHECK_EQ_INT(load_edited("\"next_worker\": 6", "\"next_worker\": 2", &err), -EBADMSG);
    CHECK(strstr(err.msg, "next_worker") != NULL);
    CHECK_EQ_INT(load_edited("\"format\"", "\"formatx\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "unknown field") != NULL);
    CHECK_EQ_INT(load_edited("\"name\": \"b-0\"", "\"name\": \"b-7\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "does not match deployment") != NULL);
    CHECK_EQ_INT(load_edited("\"cachestores\"", "\"cachestorez\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "spec.") != NULL);
    CHECK_EQ_INT(load_edited("\"target_epoch\": 5", "\"target_epoch\": 4", &err), -EBADMSG);
    CHECK(strstr(err.msg, "layouts[0]: a resize to epoch 4 from epoch 4") != NULL);
    CHECK_EQ_INT(load_edited("\"held\": true", "\"held\": 1", &err), -EBADMSG);
    CHECK(strstr(err.msg, ".held: not a boolean") != NULL);
    CHECK_EQ_INT(load_edited("{", "[", &err), -EBADMSG);
    CHECK(strstr(err.msg, "line ") != NULL);
    rm_rf();
}

/* Records written before maxmemory and committed existed load with their
 * defaults (no limit, nothing committed); a bad value is damage. */
TEST(older_records_and_new_fields)
{
    char path[128];
    dpr_err err;
    agent_state st, back;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    /* retiring[0] (kv-0) has maxmemory 0; instances[0] (b-0) committed false */
    CHECK_EQ_INT(load_edited("\"maxmemory\": 0,", "", &err), 0);
    CHECK_EQ_INT(load_edited("\"committed\": false,", "", &err), 0);
    CHECK_EQ_INT(load_edited("\"committed\": false", "\"committed\": 1", &err), -EBADMSG);
    CHECK(strstr(err.msg, ".committed") != NULL);
    /* b-0 without its maxmemory does not match the spec's 64 MiB */
    CHECK_EQ_INT(load_edited("\"maxmemory\": 67108864,", "", &err), -EBADMSG);
    CHECK(strstr(err.msg, "does not match the recorded spec") != NULL);
    CHECK_EQ_INT(load_edited("\"maxmemory\": 0,", "\"maxmemory\": -1,", &err), -EBADMSG);
    CHECK(strstr(err.msg, ".maxmemory") != NULL);
    CHECK_EQ_INT(load_edited("\"committed\": false,", "\"committed\": false, \"x\": 1,", &err),
                 -EBADMSG);
    CHECK(strstr(err.msg, "not an instance record") != NULL);

    /* checkpoint_mode: only "log" or "full"; an instance that lost the
     * spec's is damage */
    {
        static const char *const edits[][2] = {
            /* (the first is instances[0]'s own: b-0, keys sorted) */
            { "\"checkpoint_mode\": \"full\"", "\"checkpoint_mode\": \"fast\"" },
            { "\"checkpoint_mode\": \"full\",", "" },
        };
        static const char *const needles[] = { ".checkpoint_mode: not \"log\" or \"full\"",
                                                "does not match the recorded spec" };
        for (size_t e = 0; e < 2; e++) {
            int rc = load_edited(edits[e][0], edits[e][1], &err);
            CHECK_EQ_INT(rc, -EBADMSG);
            if (rc == -EBADMSG && !strstr(err.msg, needles[e]))
                fprintf(stderr, "    %s: wanted '%s'\n", err.msg, needles[e]);
            CHECK(rc != -EBADMSG || strstr(err.msg, needles[e]) != NULL);
        }
    }

    /* tls_clients: only "required", "optional" or "off" */
    CHECK_EQ_INT(load_edited("\"tls_clients\": \"optional\"", "\"tls_clients\": \"yes\"",
                             &err), -EBADMSG);
    CHECK(strstr(err.msg, ".tls_clients: not \"required\", \"optional\" or \"off\"") != NULL);

    /* from before roll-outs: no generation, no running (runs the settings) */
    sample(&st);
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    agent_state_free(&st);
    {
        size_t len;
        char *text = slurp(path, &len);
        json_t *j = json_loads(text, 0, NULL), *v;
        size_t i;
        free(text);
        json_array_foreach(json_object_get(j, "instances"), i, v) {
            json_object_del(v, "generation");
            json_object_del(v, "running");
        }
        json_dump_file(j, path, 0);
        json_decref(j);
    }
    CHECK(agent_statefile_load(path, &back, &err) >= 0);
    CHECK(back.inst[0].generation == back.generation && back.inst[0].run.generation ==
          back.generation && !agent_instance_outdated(&back.inst[0]));
    agent_state_free(&back);
    /* running, generation and the roll-out records survive a save */
    sample(&st);
    snprintf(st.inst[0].run.version, sizeof(st.inst[0].run.version), "0.9");
    st.inst[0].run.generation = 1;
    {
        agent_rollout_rec *r;
        CHECK_EQ_INT(agent_state_rollout_add(&st, "b", &r), 0);
        snprintf(r->halted, sizeof(r->halted), "b-0 failed after its update");
        r->has_previous = true;
        r->previous = st.spec.d[0];
        snprintf(r->previous.version, sizeof(r->previous.version), "0.9");
        r->resumed = 3;
    }
    st.inst[1].rolled_at_ms = 1765000000123ull;
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK(agent_statefile_load(path, &back, &err) >= 0);
    CHECK(agent_instance_outdated(&back.inst[0]) && back.inst[0].run.generation == 1);
    CHECK(strcmp(back.inst[0].run.version, "0.9") == 0);
    CHECK(back.nrollouts == 1 && back.rollouts[0].has_previous &&
          strcmp(back.rollouts[0].previous.version, "0.9") == 0 &&
          strcmp(back.rollouts[0].halted, "b-0 failed after its update") == 0);
    CHECK(back.rollouts[0].resumed == 3);
    CHECK(back.inst[1].rolled_at_ms == 1765000000123ull && back.inst[0].rolled_at_ms == 0);
    agent_state_free(&back);
    agent_state_free(&st);
    /* (the sample has no rollouts: edit one in) */
    CHECK_EQ_INT(load_edited("\"retiring\":", "\"rollouts\": [{\"deployment\": \"zz\", "
                             "\"halted\": \"\", \"previous\": null}], \"retiring\":", &err),
                 -EBADMSG);
    CHECK(strstr(err.msg, "not a deployment of the spec") != NULL);
    CHECK_EQ_INT(load_edited("\"retiring\":", "\"rollouts\": [{\"deployment\": \"b\", "
                             "\"halted\": \"\", \"previous\": {\"name\": \"b\"}}], "
                             "\"retiring\":", &err), -EBADMSG);
    CHECK(strstr(err.msg, "rollouts[0].previous") != NULL);
    CHECK_EQ_INT(load_edited("\"retiring\":", "\"rollouts\": [{\"deployment\": \"b\", "
                             "\"halted\": \"why\", \"previous\": null}], \"retiring\":",
                             &err), 0);
    CHECK_EQ_INT(load_edited("\"retiring\":", "\"rollouts\": [{\"deployment\": \"b\", "
                             "\"halted\": \"\", \"previous\": null, \"resumed\": 0}], "
                             "\"retiring\":", &err), -EBADMSG);
    CHECK(strstr(err.msg, "rollouts[0]") != NULL && strstr(err.msg, "resumed") != NULL);
    CHECK_EQ_INT(load_edited("\"retiring\":", "\"rollouts\": [{\"deployment\": \"b\", "
                             "\"halted\": \"\", \"previous\": null, \"paused\": 1}], "
                             "\"retiring\":", &err), -EBADMSG);

    /* the committed mark survives a save */
    sample(&st);
    st.inst[1].committed = true;
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK(agent_statefile_load(path, &back, &err) >= 0);
    CHECK(back.inst[1].committed && !back.inst[0].committed);
    agent_state_free(&back);
    agent_state_free(&st);
    rm_rf();
}

TEST(unreadable_is_not_damaged)
{
    char path[128];
    dpr_err err;
    agent_state back;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    mkdir(path, 0700); /* a directory where the file should be */
    CHECK(agent_statefile_load(path, &back, &err) < 0);
    rm_rf();
}

TEST(save_leaves_no_tmp)
{
    char path[128], tmp[140];
    dpr_err err;
    agent_state st;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    sample(&st);
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK(access(tmp, F_OK) < 0);
    agent_state_free(&st);
    /* a save into a missing directory fails with a message */
    snprintf(path, sizeof(path), "%s/missing/%s", dir, AGENT_STATE_FILE);
    agent_state_init(&st);
    CHECK(agent_statefile_save(path, &st, &err) < 0);
    CHECK(strstr(err.msg, "cannot create") != NULL);
    rm_rf();
}

TEST(lock)
{
    dpr_err err;
    int fd1 = -1, fd2 = -1;

    make_dir();
    CHECK_EQ_INT(agent_statefile_lock(dir, &fd1, &err), 0);
    CHECK_EQ_INT(agent_statefile_lock(dir, &fd2, &err), -EBUSY);
    CHECK(strstr(err.msg, "another dpr-agent") != NULL);
    close(fd1);
    CHECK_EQ_INT(agent_statefile_lock(dir, &fd2, &err), 0);
    close(fd2);
    rm_rf();
}

TEST(env_file)
{
    agent_instance in;
    agent_env_ctx ctx = { "/usr/local/bin/dpr-kv", "127.0.0.1", "127.0.0.1:7000", "demo",
                          "node1", NULL, NULL, NULL, false };
    char sub[128], path[160], *text, *got;
    struct stat sb;
    size_t len;

    memset(&in, 0, sizeof(in));
    snprintf(in.name, sizeof(in.name), "kv-2");
    snprintf(in.deployment, sizeof(in.deployment), "kv");
    snprintf(in.impl, sizeof(in.impl), "dpr-kv");
    snprintf(in.version, sizeof(in.version), "1");
    in.shard = 2;
    in.worker = 17;
    in.port = 7102;
    in.checkpoint_interval_ms = 100;
    in.max_clients = 10000;
    snprintf(in.token, sizeof(in.token), "0123456789abcdef0123456789abcdef");
    text = agent_env_render(&in, &ctx);
    CHECK(strstr(text, "\nDPR_KV_FINDER_TOKEN=0123456789abcdef0123456789abcdef\n") != NULL);
    CHECK(strstr(text, "\nDPR_FINDER_TOKEN=0123456789abcdef0123456789abcdef\n") != NULL);
    CHECK(strstr(text, "\nDPR_CS_EXEC=/usr/local/bin/dpr-kv\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_LISTEN=127.0.0.1:7102\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_FINDER=127.0.0.1:7000\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_WORKER=17\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_CHECKPOINT_INTERVAL_MS=100\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_MAX_CLIENTS=10000\n") != NULL);
    CHECK(strstr(text, "\nDPR_INSTANCE=kv-2\n") != NULL);
    /* its domain: the deployment's name */
    CHECK(strstr(text, "\nDPR_DOMAIN=kv\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_DOMAIN=kv\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_MAXMEMORY=0\n") != NULL); /* no limit */
    CHECK(strstr(text, "\nDPR_MAXMEMORY=0\n") != NULL);
    CHECK(strstr(text, "SEED_DIR") == NULL); /* one node: no copies */
    /* no checkpoint_mode in the spec: none (dpr-kv's default); else it */
    CHECK(strstr(text, "CHECKPOINT_MODE") == NULL);
    {
        agent_instance full = in;
        char *t;
        snprintf(full.checkpoint_mode, sizeof(full.checkpoint_mode), "full");
        t = agent_env_render(&full, &ctx);
        CHECK(t && strstr(t, "\nDPR_KV_CHECKPOINT_MODE=full\n") != NULL);
        free(t);
    }
    CHECK(strstr(text, "TLS") == NULL); /* the agents' TLS off: plain */
    {
        /* the agents' TLS: one port, TLS only, the copies of the node's
         * files; the finders' TLS ports */
        agent_env_ctx tc = ctx;
        agent_instance opt = in;
        char *t;
        tc.tls_dir = "/run/dpr/instances/tls";
        tc.finder = "10.0.0.1:7001,10.0.0.2:7001";
        t = agent_env_render(&in, &tc);
        CHECK(t && strstr(t, "\nDPR_KV_LISTEN=127.0.0.1:7102\n") != NULL);
        CHECK(t && strstr(t, "\nDPR_KV_PORT=0\nDPR_KV_TLS_PORT=7102\n") != NULL);
        CHECK(t && strstr(t, "\nDPR_KV_TLS_CERT_FILE=/run/dpr/instances/tls/node.crt\n"));
        CHECK(t && strstr(t, "\nDPR_KV_TLS_KEY_FILE=/run/dpr/instances/tls/node.key\n"));
        CHECK(t && strstr(t, "\nDPR_KV_TLS_CA_CERT_FILE=/run/dpr/instances/tls/ca.crt\n"));
        CHECK(t && strstr(t, "\nDPR_KV_TLS_AUTH_CLIENTS=yes\n")); /* default: required */
        CHECK(t && strstr(t, "\nDPR_KV_FINDER_TLS=yes\n"));
        CHECK(t && strstr(t, "\nDPR_KV_FINDER=10.0.0.1:7001,10.0.0.2:7001\n"));
        CHECK(t && !strstr(t, "CRL_FILE"));
        free(t);
        tc.tls_crl = true;
        snprintf(opt.run.tls_clients, sizeof(opt.run.tls_clients), "off");
        snprintf(opt.tls_clients, sizeof(opt.tls_clients), "off");
        t = agent_env_render(&opt, &tc);
        CHECK(t && strstr(t, "\nDPR_KV_TLS_AUTH_CLIENTS=no\n"));
        CHECK(t && strstr(t, "\nDPR_KV_TLS_CRL_FILE=/run/dpr/instances/tls/ca.crl\n"));
        free(t);
    }
    {
        /* a cluster: copies before reports, and the copies this node holds
         * of the worker (an instance moved here starts from them) */
        agent_env_ctx cl = ctx;
        char *t;
        cl.replica_socket = "/run/dpr/replication.socket";
        cl.replica_root = "/var/lib/dpr/replicas";
        t = agent_env_render(&in, &cl);
        CHECK(t && strstr(t, "\nDPR_KV_REPLICA_SOCKET=/run/dpr/replication.socket\n") != NULL);
        CHECK(t && strstr(t, "\nDPR_KV_SEED_DIR=/var/lib/dpr/replicas/kv/17\n") != NULL);
        free(t);
    }

    make_dir();
    snprintf(sub, sizeof(sub), "%s/run/instances", dir);
    snprintf(path, sizeof(path), "%s/kv-2.env", sub);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 1);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 0); /* unchanged: not rewritten */
    got = slurp(path, &len);
    CHECK(got && strcmp(got, text) == 0);
    /* it holds a secret: only root (systemd) reads it */
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
    /* a file from before tokens (0644) is written again, even when equal */
    CHECK_EQ_INT(chmod(path, 0644), 0);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 1);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 0);
    free(got);
    free(text);
    in.checkpoint_interval_ms = 50;
    in.maxmemory = 512u << 20;
    text = agent_env_render(&in, &ctx);
    CHECK(strstr(text, "\nDPR_KV_MAXMEMORY=536870912\n") != NULL);
    CHECK(strstr(text, "\nDPR_MAXMEMORY=536870912\n") != NULL);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 1);
    CHECK_EQ_INT(agent_env_remove(sub, "kv-2"), 0);
    CHECK(access(path, F_OK) < 0);
    CHECK_EQ_INT(agent_env_remove(sub, "kv-2"), 0);
    free(text);

    {
        char ep[64];
        agent_env_endpoint(&in, "::1", ep, sizeof(ep));
        CHECK(strcmp(ep, "[::1]:7102") == 0);
    }
    rm_rf();
}

/* Issue 8: every instance has a finder token of its own, recorded in
 * agent.json (0600); a file from before tokens loads, giving each instance
 * a new one (agent_statefile_load returns 1: save before use). */
TEST(tokens_recorded)
{
    char path[128];
    dpr_err err;
    agent_state st, back, again;
    struct stat sb;
    json_t *j, *a, *o;
    size_t k;

    make_dir();
    snprintf(path, sizeof(path), "%s/%s", dir, AGENT_STATE_FILE);
    sample(&st);
    for (size_t i = 0; i < st.ninst + st.nretiring; i++) {
        const agent_instance *x = i < st.ninst ? &st.inst[i] : &st.retiring[i - st.ninst];
        CHECK(agent_token_valid(x->token));
        for (size_t m = 0; m < i; m++) {
            const agent_instance *y = m < st.ninst ? &st.inst[m] : &st.retiring[m - st.ninst];
            CHECK(strcmp(x->token, y->token) != 0);
        }
    }
    CHECK_EQ_INT(agent_statefile_save(path, &st, &err), 0);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
    CHECK_EQ_INT(agent_statefile_load(path, &back, &err), 0);
    for (size_t i = 0; i < st.ninst; i++)
        CHECK(strcmp(back.inst[i].token, st.inst[i].token) == 0);
    for (size_t i = 0; i < st.nretiring; i++)
        CHECK(strcmp(back.retiring[i].token, st.retiring[i].token) == 0);
    agent_state_free(&back);

    /* as an agent from before tokens wrote it */
    j = json_load_file(path, 0, NULL);
    CHECK(j != NULL);
    json_array_foreach(json_object_get(j, "instances"), k, o)
        CHECK_EQ_INT(json_object_del(o, "token"), 0);
    json_array_foreach(json_object_get(j, "retiring"), k, o)
        CHECK_EQ_INT(json_object_del(o, "token"), 0);
    CHECK_EQ_INT(agent_state_from_json(j, &back, &err), 1);
    CHECK_EQ_INT(back.ninst, st.ninst);
    CHECK_EQ_INT(back.nretiring, st.nretiring);
    for (size_t i = 0; i < back.ninst; i++) {
        CHECK(agent_token_valid(back.inst[i].token));
        CHECK(strcmp(back.inst[i].token, st.inst[i].token) != 0); /* new ones */
        CHECK_EQ_INT(back.inst[i].worker, st.inst[i].worker);
        CHECK_EQ_INT(back.inst[i].port, st.inst[i].port);
    }
    for (size_t i = 0; i < back.nretiring; i++)
        CHECK(agent_token_valid(back.retiring[i].token));
    /* once saved, they are what the next load gives */
    CHECK_EQ_INT(agent_statefile_save(path, &back, &err), 0);
    CHECK_EQ_INT(agent_statefile_load(path, &again, &err), 0);
    for (size_t i = 0; i < back.ninst; i++)
        CHECK(strcmp(again.inst[i].token, back.inst[i].token) == 0);
    agent_state_free(&again);
    agent_state_free(&back);
    /* and through agent_statefile_load: 1 */
    CHECK_EQ_INT(json_dump_file(j, path, 0), 0);
    CHECK_EQ_INT(agent_statefile_load(path, &back, &err), 1);
    agent_state_free(&back);

    /* a damaged token is damage */
    a = json_object_get(j, "instances");
    json_object_set_new(json_array_get(a, 0), "token", json_string("not-hex"));
    CHECK_EQ_INT(agent_state_from_json(j, &back, &err), -EBADMSG);
    CHECK(strstr(err.msg, "instances[0].token") != NULL);
    json_object_set_new(json_array_get(a, 0), "token",
                        json_string("0123456789ABCDEF0123456789abcdef")); /* upper case */
    CHECK_EQ_INT(agent_state_from_json(j, &back, &err), -EBADMSG);
    json_object_set_new(json_array_get(a, 0), "token", json_integer(7));
    CHECK_EQ_INT(agent_state_from_json(j, &back, &err), -EBADMSG);
    json_decref(j);
    agent_state_free(&st);

    {
        char t1[AGENT_TOKEN_LEN + 1], t2[AGENT_TOKEN_LEN + 1];
        CHECK_EQ_INT(agent_token_new(t1), 0);
        CHECK_EQ_INT(agent_token_new(t2), 0);
        CHECK(agent_token_valid(t1) && agent_token_valid(t2));
        CHECK(strcmp(t1, t2) != 0);
        CHECK(!agent_token_valid("0123456789abcdef0123456789abcde"));   /* 31 */
        CHECK(!agent_token_valid("0123456789abcdef0123456789abcdef0")); /* 33 */
    }
    rm_rf();
}

int main(void)
{
    RUN(round_trip);
    RUN(every_truncation_is_an_error);
    RUN(inconsistent_content_is_an_error);
    RUN(older_records_and_new_fields);
    RUN(unreadable_is_not_damaged);
    RUN(save_leaves_no_tmp);
    RUN(lock);
    RUN(env_file);
    RUN(tokens_recorded);
    return check_summary("test_agent_state");
}
