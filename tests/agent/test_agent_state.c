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
    static const agent_alloc alloc = { 7100, 7199 };
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
    }
    agent_state_init(&a);
    agent_plan_make(&a, &s, &alloc, &b, &p);
    agent_plan_free(&p);
    s.n = 1;
    s.d = &d[1];
    agent_spec_copy(&s, &s2);
    agent_plan_make(&b, &s2, &alloc, st, &p);
    agent_plan_free(&p);
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
    CHECK(memcmp(back.retiring, st.retiring, st.nretiring * sizeof(*st.retiring)) == 0);
    CHECK(strcmp(back.spec.name, "demo") == 0);
    CHECK_EQ_INT(back.spec.n, 1);
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
    CHECK_EQ_INT(load_edited("\"version\": \"1.1\"", "\"version\": \"9\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "does not match the recorded spec") != NULL);
    CHECK_EQ_INT(load_edited("\"next_worker\": 6", "\"next_worker\": 2", &err), -EBADMSG);
    CHECK(strstr(err.msg, "next_worker") != NULL);
    CHECK_EQ_INT(load_edited("\"format\"", "\"formatx\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "unknown field") != NULL);
    CHECK_EQ_INT(load_edited("\"name\": \"b-0\"", "\"name\": \"b-7\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "does not match deployment") != NULL);
    CHECK_EQ_INT(load_edited("\"cachestores\"", "\"cachestorez\"", &err), -EBADMSG);
    CHECK(strstr(err.msg, "spec.") != NULL);
    CHECK_EQ_INT(load_edited("{", "[", &err), -EBADMSG);
    CHECK(strstr(err.msg, "line ") != NULL);
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
                          "node1" };
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
    text = agent_env_render(&in, &ctx);
    CHECK(strstr(text, "\nDPR_CS_EXEC=/usr/local/bin/dpr-kv\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_LISTEN=127.0.0.1:7102\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_FINDER=127.0.0.1:7000\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_WORKER=17\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_CHECKPOINT_INTERVAL_MS=100\n") != NULL);
    CHECK(strstr(text, "\nDPR_KV_MAX_CLIENTS=10000\n") != NULL);
    CHECK(strstr(text, "\nDPR_INSTANCE=kv-2\n") != NULL);

    make_dir();
    snprintf(sub, sizeof(sub), "%s/run/instances", dir);
    snprintf(path, sizeof(path), "%s/kv-2.env", sub);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 1);
    CHECK_EQ_INT(agent_env_write(sub, "kv-2", text), 0); /* unchanged: not rewritten */
    got = slurp(path, &len);
    CHECK(got && strcmp(got, text) == 0);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    free(got);
    free(text);
    in.checkpoint_interval_ms = 50;
    text = agent_env_render(&in, &ctx);
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

int main(void)
{
    RUN(round_trip);
    RUN(every_truncation_is_an_error);
    RUN(inconsistent_content_is_an_error);
    RUN(unreadable_is_not_damaged);
    RUN(save_leaves_no_tmp);
    RUN(lock);
    RUN(env_file);
    return check_summary("test_agent_state");
}
