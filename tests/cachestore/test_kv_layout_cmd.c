/* test_kv_layout_cmd.c - DPR.LAYOUT's rules (kv_layout_cmd.c), on a shard
 * made of a list of keys: every subcommand's replies, said again, refused,
 * the layout file written before a state is adopted and nothing adopted
 * when it cannot be written. The keys' listing, the migration and the cut
 * are the host's (dpr-kv's dictionary and dpr-redis' redis-server in the
 * Python suites, on both implementations). */
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "kv_layout_cmd.h"

typedef struct shard {
    const char *keys[8];
    size_t nkeys;
    bool list_fails;
    kv_layout_migration m;
    bool committed;
    bool busy; /* ABORT must wait */
    int starts, kills, drops;
} shard;

static ssize_t count_foreign(void *ud, const kv_layout *l, dpr_err *err)
{
    shard *s = ud;
    ssize_t n = 0;

    if (s->list_fails) {
        dpr_err_set(err, -EPROTO, "cannot list the keys: SCAN failed");
        return -1;
    }
    for (size_t i = 0; i < s->nkeys; i++)
        n += !kv_layout_owns(l, s->keys[i], strlen(s->keys[i]));
    return n;
}

static kv_layout_migration migration(void *ud, uint64_t epoch)
{
    (void)epoch;
    return ((shard *)ud)->m;
}

static bool all_committed(void *ud, uint64_t *version, uint64_t *cut)
{
    *version = 7;
    *cut = 5;
    return ((shard *)ud)->committed;
}

static int migrate_start(void *ud, dpr_err *err)
{
    shard *s = ud;
    (void)err;
    s->starts++;
    s->m = KV_LAYOUT_MIGRATION_RUNNING;
    return 0;
}

static bool may_abort(void *ud, dpr_buf *out)
{
    if (!((shard *)ud)->busy)
        return true;
    dpr_buf_append(out, "-TRYAGAIN busy\r\n", 16);
    return false;
}

static void migrate_kill(void *ud)
{
    ((shard *)ud)->kills++;
}

static ssize_t drop_foreign(void *ud, const char *why, dpr_err *err)
{
    (void)why;
    (void)err;
    return ++((shard *)ud)->drops;
}

static shard sh;
static kv_layout_state st;
static char file[256];
static const kv_layout_host host = {&sh,          &st,           file,         count_foreign,
                                    migration,    all_committed, migrate_start, may_abort,
                                    migrate_kill, drop_foreign};

/* Runs "DPR.LAYOUT <words...>" (space-separated) and returns the reply. */
static char reply[1024];
static const char *run(const char *words)
{
    char buf[512], *save = NULL;
    kv_arg argv[16];
    size_t argc = 0;
    dpr_buf out = DPR_BUF_INIT;

    snprintf(buf, sizeof(buf), "DPR.LAYOUT %s", words);
    for (char *w = strtok_r(buf, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
        argv[argc++] = (kv_arg){w, strlen(w)};
    kv_layout_cmd(&host, argc, argv, &out);
    snprintf(reply, sizeof(reply), "%.*s", (int)out.len, out.data);
    dpr_buf_free(&out);
    return reply;
}

static int starts_with(const char *s, const char *prefix)
{
    if (strncmp(s, prefix, strlen(prefix)) == 0)
        return 1;
    fprintf(stderr, "reply: %s\nexpected: %s...\n", s, prefix);
    return 0;
}

/* The layout file as it is on disk now. */
static void saved(kv_layout_state *out)
{
    char *data = NULL;
    size_t len = 0;
    dpr_err err;
    FILE *f = fopen(file, "rb");

    memset(out, 0, sizeof(*out));
    CHECK(f != NULL);
    if (!f)
        return;
    data = malloc(KV_LAYOUT_FILE_MAX);
    len = fread(data, 1, KV_LAYOUT_FILE_MAX, f);
    fclose(f);
    CHECK_EQ_INT(kv_layout_decode(data, len, out, &err), 0);
    free(data);
}

static void reset(void)
{
    kv_layout_state_free(&st);
    memset(&sh, 0, sizeof(sh));
    unlink(file);
}

TEST(set_and_said_again)
{
    kv_layout_state f;

    reset();
    CHECK(strcmp(run(""), "*3\r\n:0\r\n:-1\r\n*0\r\n") == 0);
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0);
    saved(&f);
    CHECK(kv_layout_equal(&f.active, &st.active));
    kv_layout_state_free(&f);
    CHECK(strcmp(run(""), "*3\r\n:1\r\n:0\r\n*1\r\n$3\r\na:1\r\n") == 0);
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0); /* said again */
    CHECK(starts_with(run("SET 1 0 b:1"), "-ERR layout 1 is not newer than this shard's (1)"));
    CHECK(starts_with(run("SET 2 5 a:1 b:1"), "-ERR ")); /* shard index checked */
    CHECK(starts_with(run("SET x 0 a:1"), "-ERR "));
    CHECK(starts_with(run("NOPE"), "-ERR unknown subcommand or wrong number of arguments for "
                                   "'DPR.LAYOUT NOPE'"));
    CHECK(starts_with(run("COMMIT x"), "-ERR "));
    CHECK(starts_with(run("COMMIT 1 SOON"), "-ERR unknown subcommand"));
}

TEST(set_never_strands_keys)
{
    reset();
    sh.keys[0] = "k1";
    sh.keys[1] = "k2";
    sh.keys[2] = "k3";
    sh.keys[3] = "k4";
    sh.nkeys = 4;
    /* 4 shards: some of the keys go elsewhere */
    CHECK(starts_with(run("SET 1 0 a:1 b:1 c:1 d:1"), "-ERR layout 1 would strand "));
    CHECK_EQ_U64(st.active.epoch, 0);
    CHECK(access(file, F_OK) != 0); /* nothing written */
    sh.list_fails = true;
    CHECK(strcmp(run("SET 1 0 a:1 b:1"), "-ERR cannot list the keys: SCAN failed\r\n") == 0);
    sh.list_fails = false;
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0); /* one shard owns them all */
}

TEST(resize_prepare_migrate_commit)
{
    kv_layout_state f;

    reset();
    sh.keys[0] = "k1";
    sh.keys[1] = "k2";
    sh.keys[2] = "k3";
    sh.nkeys = 3;
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0);
    CHECK(strcmp(run("PREPARE 2 0 a:1 b:1"), "+OK\r\n") == 0);
    saved(&f);
    CHECK_EQ_U64(f.active.epoch, 1);
    CHECK_EQ_U64(f.pending.epoch, 2);
    kv_layout_state_free(&f);
    CHECK(strcmp(run("PREPARE 2 0 a:1 b:1"), "+OK\r\n") == 0); /* a driver that restarted */
    CHECK(starts_with(run("PREPARE 3 0 a:1 b:1"), "-ERR a resize to layout 2 is prepared"));
    CHECK(starts_with(run("SET 3 0 a:1"), "-ERR a resize to layout 2 is prepared"));
    CHECK(strcmp(run("PENDING"), "*3\r\n:2\r\n:0\r\n*2\r\n$3\r\na:1\r\n$3\r\nb:1\r\n") == 0);
    CHECK(starts_with(run("MIGRATE 5"), "-ERR no resize to layout 5 is prepared"));
    CHECK(strcmp(run("MIGRATE 2"),
                 "-TRYAGAIN the state before the pause is not committed yet (version 7, cut 5): "
                 "wait for INFO dpr_layout_committed:1\r\n") == 0);
    CHECK_EQ_INT(sh.starts, 0);
    sh.committed = true;
    CHECK(strcmp(run("MIGRATE 2"), "+OK\r\n") == 0);
    CHECK(strcmp(run("MIGRATE 2"), "+OK\r\n") == 0); /* already moving */
    CHECK_EQ_INT(sh.starts, 1);
    CHECK(strcmp(run("COMMIT 2"), "-ERR the migration is still running\r\n") == 0);
    sh.m = KV_LAYOUT_MIGRATION_NONE; /* say it failed, or a rollback came */
    CHECK(starts_with(run("COMMIT 2"), "-ERR COMMIT would drop "));
    CHECK_EQ_U64(st.pending.epoch, 2);
    sh.m = KV_LAYOUT_MIGRATION_DONE;
    CHECK(strcmp(run("COMMIT 2"), ":1\r\n") == 0); /* drop_foreign's count */
    CHECK_EQ_U64(st.active.epoch, 2);
    CHECK_EQ_U64(st.pending.epoch, 0);
    saved(&f);
    CHECK(kv_layout_equal(&f.active, &st.active));
    CHECK_EQ_U64(f.pending.epoch, 0);
    kv_layout_state_free(&f);
    CHECK(strcmp(run("COMMIT 2"), ":0\r\n") == 0); /* said again */
    CHECK(starts_with(run("COMMIT 3"), "-ERR no resize to layout 3 is prepared"));
    /* FORCE drops what did not move */
    sh.m = KV_LAYOUT_MIGRATION_NONE;
    CHECK(strcmp(run("PREPARE 3 - a:1 b:1"), "+OK\r\n") == 0); /* leaving */
    CHECK(strcmp(run("COMMIT 3 FORCE"), ":2\r\n") == 0);
    CHECK_EQ_U64(st.active.shard, KV_LAYOUT_NO_SHARD);
}

TEST(abort)
{
    reset();
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0);
    CHECK(strcmp(run("ABORT 2"), ":0\r\n") == 0); /* nothing prepared */
    CHECK(strcmp(run("PREPARE 2 1 a:1 b:1"), "+OK\r\n") == 0);
    sh.busy = true;
    CHECK(strcmp(run("ABORT 2"), "-TRYAGAIN busy\r\n") == 0);
    CHECK_EQ_U64(st.pending.epoch, 2);
    CHECK_EQ_INT(sh.kills, 0);
    sh.busy = false;
    CHECK(strcmp(run("ABORT 2"), ":1\r\n") == 0);
    CHECK_EQ_INT(sh.kills, 1);
    CHECK_EQ_U64(st.active.epoch, 1);
    CHECK_EQ_U64(st.pending.epoch, 0);
    CHECK(strcmp(run("ABORT 2"), ":0\r\n") == 0);
}

TEST(nothing_adopted_unless_saved)
{
    size_t len;

    reset();
    CHECK(strcmp(run("SET 1 0 a:1"), "+OK\r\n") == 0);
    len = strlen(file);
    snprintf(file + len, sizeof(file) - len, ".missing/layout"); /* no such directory */
    CHECK(starts_with(run("SET 2 0 a:1"), "-ERR cannot save the layout: "));
    CHECK(starts_with(run("PREPARE 2 0 a:1 b:1"), "-ERR cannot save the layout: "));
    CHECK_EQ_U64(st.active.epoch, 1);
    CHECK_EQ_U64(st.pending.epoch, 0);
    file[len] = '\0';
}

int main(void)
{
    char dir[] = "/tmp/test_kv_layout_cmd.XXXXXX";
    int rc;

    if (!mkdtemp(dir))
        return 1;
    snprintf(file, sizeof(file), "%s/layout", dir);
    RUN(set_and_said_again);
    RUN(set_never_strands_keys);
    RUN(resize_prepare_migrate_commit);
    RUN(abort);
    RUN(nothing_adopted_unless_saved);
    kv_layout_state_free(&st);
    unlink(file);
    rc = rmdir(dir);
    (void)rc;
    return check_summary("test_kv_layout_cmd");
}
