/* test_kv_rdb.c - dpr-kv reading dpr-redis' checkpoints (kv_rdb.c): the
 * file names, what it makes of SCAN pages and of each key's TYPE, PTTL and
 * GET (strings kept, what dpr-kv cannot hold refused naming the key, keys
 * gone meanwhile skipped, other shapes a protocol error), and, when
 * redis-server is installed, a real RDB written by one and read back
 * (kv_redis.c: the private child, its bounded connection, its directory
 * removed). Links dpr-kv's modules (libdprkv.a). */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "kv_dict.h"
#include "kv_rdb.h"
#include "kv_redis.h"

static const uint8_t seed[16] = {2, 7, 1, 8};

/* The replies in text (RESP), read with a bounded reader; n of them. */
static int replies(const char *text, redisReply **out, int n)
{
    redisReader *rd = redisReaderCreate();
    int got = 0;
    void *rep;

    redisReaderFeed(rd, text, strlen(text));
    while (got < n && redisReaderGetReply(rd, &rep) == REDIS_OK && rep)
        out[got++] = rep;
    redisReaderFree(rd);
    return got;
}

static void free_replies(redisReply **r, int n)
{
    for (int i = 0; i < n; i++)
        freeReplyObject(r[i]);
}

TEST(names)
{
    uint64_t v = 0, wl = 0;

    CHECK(kv_rdb_parse_name("ckpt-12.w3.rdb", &v, &wl));
    CHECK_EQ_U64(v, 12);
    CHECK_EQ_U64(wl, 3);
    CHECK(!kv_rdb_parse_name("ckpt-12.w3.rdb.tmp", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt-12.kv", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt--1.w3.rdb", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt- 1.w3.rdb", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt-1.w.rdb", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt-1.w-3.rdb", &v, &wl));
    CHECK(!kv_rdb_parse_name("ckpt-99999999999999999999.w1.rdb", &v, &wl));
    CHECK(!kv_rdb_parse_name("empty.rdb", &v, &wl));
}

TEST(scan_pages)
{
    redisReply *r[6];
    const redisReply *keys = NULL;
    char cursor[8];
    dpr_err err = DPR_ERR_INIT;

    CHECK_EQ_INT(replies("*2\r\n$3\r\n123\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n"
                         "*2\r\n$2\r\n0x\r\n*0\r\n"
                         "*2\r\n$9\r\n123456789\r\n*0\r\n"
                         "*2\r\n$1\r\n0\r\n*1\r\n:1\r\n"
                         "*1\r\n$1\r\n0\r\n"
                         "*2\r\n$1\r\n0\r\n$1\r\na\r\n", r, 6), 6);
    CHECK_EQ_INT(kv_rdb_scan_page(r[0], cursor, sizeof(cursor), &keys, &err), 0);
    CHECK(strcmp(cursor, "123") == 0);
    CHECK(keys && keys->elements == 2);
    CHECK_EQ_INT(kv_rdb_scan_page(r[1], cursor, sizeof(cursor), &keys, &err), -EPROTO);
    CHECK_EQ_INT(kv_rdb_scan_page(r[2], cursor, sizeof(cursor), &keys, &err), -EPROTO);
    CHECK_EQ_INT(kv_rdb_scan_page(r[3], cursor, sizeof(cursor), &keys, &err), -EPROTO);
    CHECK_EQ_INT(kv_rdb_scan_page(r[4], cursor, sizeof(cursor), &keys, &err), -EPROTO);
    CHECK_EQ_INT(kv_rdb_scan_page(r[5], cursor, sizeof(cursor), &keys, &err), -EPROTO);
    free_replies(r, 6);
}

/* One key's TYPE, PTTL and GET replies (RESP text) through kv_rdb_take. */
static int take(kv_dict *d, const char *key, const char *three, dpr_err *err)
{
    redisReply *r[4];
    char text[512];
    int ret;

    snprintf(text, sizeof(text), "$%zu\r\n%s\r\n%s", strlen(key), key, three);
    CHECK_EQ_INT(replies(text, r, 4), 4);
    ret = kv_rdb_take(d, "ckpt-1.w1.rdb", r[0], r[1], r[2], r[3], err);
    free_replies(r, 4);
    return ret;
}

TEST(keys)
{
    kv_dict d;
    dpr_err err = DPR_ERR_INIT;
    kv_entry *e;

    kv_dict_init(&d, seed);
    CHECK_EQ_INT(take(&d, "s", "+string\r\n:-1\r\n$5\r\nhello\r\n", &err), 0);
    e = kv_dict_find(&d, "s", 1);
    CHECK(e && e->vlen == 5 && memcmp(kv_entry_val(e), "hello", 5) == 0);
    /* gone meanwhile: skipped */
    CHECK_EQ_INT(take(&d, "x", "+none\r\n:-2\r\n$-1\r\n", &err), 1);
    CHECK_EQ_INT(take(&d, "y", "+string\r\n:-2\r\n$-1\r\n", &err), 1);
    CHECK_EQ_INT(take(&d, "z", "+string\r\n:-1\r\n$-1\r\n", &err), 1);
    /* what dpr-kv cannot hold: refused, the key named */
    CHECK_EQ_INT(take(&d, "h", "+hash\r\n:-1\r\n-WRONGTYPE x\r\n", &err), -ENOTSUP);
    CHECK(strstr(dpr_err_str(&err, 0), "key 'h' in ckpt-1.w1.rdb is a hash"));
    CHECK_EQ_INT(take(&d, "q\n'", "+zset\r\n:-1\r\n-WRONGTYPE x\r\n", &err), -ENOTSUP);
    CHECK(strstr(dpr_err_str(&err, 0), "key 'q\\x0a\\x27'"));
    CHECK_EQ_INT(take(&d, "t", "+string\r\n:5000\r\n$1\r\nv\r\n", &err), -ENOTSUP);
    CHECK(strstr(dpr_err_str(&err, 0), "key 't' in ckpt-1.w1.rdb expires (TTL 5000 ms)"));
    /* other shapes */
    CHECK_EQ_INT(take(&d, "a", "$6\r\nstring\r\n:-1\r\n$1\r\nv\r\n", &err), -EPROTO);
    CHECK_EQ_INT(take(&d, "a", "+string\r\n$2\r\n-1\r\n$1\r\nv\r\n", &err), -EPROTO);
    CHECK_EQ_INT(take(&d, "a", "+string\r\n:-1\r\n:1\r\n", &err), -EPROTO);
    CHECK_EQ_INT(take(&d, "a", "+string\r\n:-1\r\n-ERR x\r\n", &err), -EPROTO);
    CHECK_EQ_U64(kv_dict_size(&d), 1);
    kv_dict_free(&d);
}

static bool have_redis(void)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX], *copy, *dir, *save = NULL;
    bool found = false;

    if (getenv("DPR_REDIS_SERVER"))
        return true;
    copy = strdup(path ? path : "");
    for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        snprintf(buf, sizeof(buf), "%s/redis-server", dir);
        found = access(buf, X_OK) == 0;
    }
    free(copy);
    return found;
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A real RDB: written by a redis-server, read back by kv_rdb_load. */
TEST(real_rdb)
{
    char dir[] = "/tmp/test_kv_rdb.XXXXXX", sockdir[PATH_MAX], sock[PATH_MAX], tmp[PATH_MAX];
    char rdb[PATH_MAX], key[32], val[32];
    kv_redis_opts o = {.sockdir = sockdir, .socket = sock, .dbfile = "ckpt-9.w2.rdb",
                       .timeout_ms = 30000};
    dpr_err err = DPR_ERR_INIT;
    redisContext *rc;
    redisReply *rep;
    pid_t pid = 0;
    kv_dict d;

    if (!have_redis()) {
        printf("  (skipped: no redis-server)\n");
        return;
    }
    CHECK(mkdtemp(dir) != NULL);
    snprintf(sockdir, sizeof(sockdir), "%s/s", dir);
    snprintf(sock, sizeof(sock), "%s/s/r.sock", dir);
    snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
    snprintf(rdb, sizeof(rdb), "%s/ckpt-9.w2.rdb", dir);
    CHECK_EQ_INT(mkdir(tmp, 0700), 0);
    o.dir = dir;
    CHECK_EQ_INT(kv_redis_start(&o, &pid, &err), 0);
    rc = kv_redis_connect(sock, 10000, 16, &err);
    CHECK(rc != NULL);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i * 7);
        CHECK_EQ_INT(redisAppendCommand(rc, "SET %s %s", key, val), REDIS_OK);
    }
    CHECK_EQ_INT(redisAppendCommand(rc, "SAVE"), REDIS_OK);
    for (int i = 0; i <= 3000; i++) {
        CHECK_EQ_INT(kv_redis_reply(rc, &rep, &err), 0);
        CHECK(rep->type == REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    /* the bound: an array reply above it fails the connection */
    CHECK_EQ_INT(redisAppendCommand(rc, "KEYS *"), REDIS_OK);
    CHECK_EQ_INT(kv_redis_reply(rc, &rep, &err), -EPROTO);
    kv_redis_close(rc);
    kv_redis_kill(pid);

    setenv("TMPDIR", tmp, 1);
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_rdb_load(rdb, &d, &err), 0);
    CHECK_EQ_U64(kv_dict_size(&d), 3000);
    kv_entry *e = kv_dict_find(&d, "k2999", 5);
    CHECK(e && e->vlen == 6 && memcmp(kv_entry_val(e), "v20993", 6) == 0);
    CHECK_EQ_INT(entries(tmp), 0); /* its private directory is gone */
    kv_dict_free(&d);

    /* a file that is not an RDB: redis-server refuses it, a clear error */
    FILE *f = fopen(rdb, "w");
    CHECK(f != NULL);
    fputs("not an rdb\n", f);
    fclose(f);
    kv_dict_init(&d, seed);
    CHECK(kv_rdb_load(rdb, &d, &err) < 0);
    CHECK(strstr(dpr_err_str(&err, 0), "cannot read"));
    CHECK_EQ_INT(entries(tmp), 0);
    kv_dict_free(&d);
    CHECK(kv_rdb_load("/nonexistent/ckpt-1.w1.rdb", &d, &err) == -ENOENT);
    unsetenv("TMPDIR");
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    RUN(names);
    RUN(scan_pages);
    RUN(keys);
    RUN(real_rdb);
    return check_summary("kv_rdb");
}
