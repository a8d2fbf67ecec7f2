/* test_kv_chain.c - restoring versions from full images and change logs
 * (kv_chain.c): every version of a directory of mixed files comes back
 * exactly; a missing or damaged link is a clear error; what garbage
 * collection may delete. Links dpr-kv's modules (libdprkv.a). */
#include "check.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "kv_chain.h"
#include "kv_ckpt.h"
#include "kv_dict.h"
#include "kvtest.h"

#define WORKER 7
#define NVERS 16

static const uint8_t seed[16] = {3, 1, 4};
static char dir[] = "/tmp/test_kv_chain.XXXXXX";


static void copy_dict(kv_dict *dst, kv_dict *src)
{
    CHECK_EQ_INT(kvtest_copy(dst, src), 0);
}

/* The writes of version v: sets, overwrites, appends and deletes that depend
 * on what earlier versions did. */
static void writes(kv_dict *truth, kv_ckpt_log *l, uint64_t v)
{
    char k[32], val[48];
    size_t newlen;
    for (int i = 0; i < 40; i++) {
        int kl = snprintf(k, sizeof(k), "k%d", (int)((v * 13 + (uint64_t)i * 7) % 90));
        int vl = snprintf(val, sizeof(val), "v%llu.%d", (unsigned long long)v, i);
        enum kv_ckpt_op o = i % 5 == 3 ? KV_CKPT_OP_DEL
                            : i % 5 == 4 ? KV_CKPT_OP_APPEND
                                         : KV_CKPT_OP_SET;
        if (o == KV_CKPT_OP_SET)
            CHECK_EQ_INT(kv_dict_set(truth, k, (size_t)kl, val, (size_t)vl, NULL), 0);
        else if (o == KV_CKPT_OP_DEL)
            (void)kv_dict_delete(truth, k, (size_t)kl);
        else
            CHECK_EQ_INT(kv_dict_append(truth, k, (size_t)kl, val, (size_t)vl, &newlen), 0);
        CHECK_EQ_INT(kv_ckpt_log_add(l, o, k, (size_t)kl, o == KV_CKPT_OP_DEL ? NULL : val,
                                     o == KV_CKPT_OP_DEL ? 0 : (size_t)vl), 0);
    }
}

/*
 * Versions 1..15 execute writes; files are written for some of them:
 *   2 change log on 0, 4 log on 2, 5 full, 7 log on 5, 9 log on 7,
 *   10 full, 12 log on 10, 15 log on 12
 * (versions without a file held no writes of their own in a real worker;
 * here their writes go into the next file's log, as they would).
 * state[v] is the keyspace after version v.
 */
static const uint64_t files[] = {2, 4, 5, 7, 9, 10, 12, 15};
static const int full_at[] = {0, 0, 1, 0, 0, 1, 0, 0};
#define NFILES (sizeof(files) / sizeof(files[0]))
static kv_dict state[NVERS];

static void build(void)
{
    kv_dict truth;
    kv_ckpt_log l = KV_CKPT_LOG_INIT;
    dpr_err err = DPR_ERR_INIT;
    uint64_t prev = 0;
    size_t fi = 0;

    kv_dict_init(&truth, seed);
    for (uint64_t v = 1; v < NVERS; v++) {
        writes(&truth, &l, v);
        kv_dict_init(&state[v], seed);
        copy_dict(&state[v], &truth);
        if (fi < NFILES && files[fi] == v) {
            kv_ckpt_meta m = {WORKER, 1, v, 0, 0, prev, false, 0};
            if (full_at[fi]) {
                CHECK_EQ_INT(kv_ckpt_write(dir, &m, &truth, &err), 0);
            } else {
                m.base = prev;
                CHECK_EQ_INT(kv_ckpt_write_delta(dir, &m, &l, &err), 0);
            }
            kv_ckpt_log_reset(&l);
            prev = v;
            fi++;
        }
    }
    kv_dict_init(&state[0], seed);
    kv_ckpt_log_free(&l);
    kv_dict_free(&truth);
}

static kv_chain_file *scan(uint64_t **v, size_t *n)
{
    kv_chain_file *f = NULL;
    dpr_err err = DPR_ERR_INIT;
    CHECK_EQ_INT(kv_ckpt_list(dir, v, n), 0);
    CHECK_EQ_INT(kv_chain_scan(dir, WORKER, *v, *n, &f, &err), 0);
    return f;
}

TEST(every_version_is_restored)
{
    uint64_t *v = NULL;
    size_t n = 0;
    kv_chain_file *f = scan(&v, &n);
    dpr_err err = DPR_ERR_INIT;
    kv_ckpt_meta m;

    CHECK_EQ_INT((int)n, (int)NFILES);
    CHECK_EQ_INT(kv_chain_check(f, n, dir, &err), 0);
    for (size_t i = 0; i < n && f; i++) {
        CHECK_EQ_U64(f[i].version, files[i]);
        CHECK(f[i].delta == !full_at[i]);
        CHECK(kv_chain_starts(&f[i]) == (full_at[i] || i == 0));
    }
    /* version r (what the finder may ask) is the newest file <= r */
    for (uint64_t r = 2; r < NVERS && f; r++) {
        ssize_t idx = kv_chain_at_or_below(f, n, r);
        kv_dict d;
        CHECK(idx >= 0);
        kv_dict_init(&d, seed);
        CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, (size_t)idx, &d, &m, &err), 0);
        CHECK(kvtest_same(&d, &state[f[idx].version]));
        CHECK_EQ_U64(m.version, f[idx].version);
        kv_dict_free(&d);
    }
    CHECK(kv_chain_at_or_below(f, n, 1) == -1);
    free(f);
    free(v);
}

/* Garbage collection keeps the chain of the newest file <= cut. */
TEST(prunable)
{
    uint64_t *v = NULL;
    size_t n = 0;
    kv_chain_file *f = scan(&v, &n);

    if (!f)
        return;
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 0), 0);
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 1), 0);
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 4), 0);  /* 4's chain starts at 2 */
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 5), 2);  /* 5 is full */
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 8), 2);  /* 7's chain starts at 5 */
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 9), 2);
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 11), 5); /* 10 is full */
    CHECK_EQ_INT((int)kv_chain_prunable(f, n, 99), 5);
    /* full images only: the newest <= cut stays (the old rule) */
    kv_chain_file all[3] = {{3, 0, false, 0, 1}, {6, 0, false, 0, 1}, {8, 0, false, 0, 1}};
    CHECK_EQ_INT((int)kv_chain_prunable(all, 3, 2), 0);
    CHECK_EQ_INT((int)kv_chain_prunable(all, 3, 7), 1);
    CHECK_EQ_INT((int)kv_chain_prunable(all, 3, 8), 2);
    free(f);
    free(v);
}

/* A missing link (a file deleted) is an error naming it; versions whose
 * chains do not need it are still restored. */
TEST(missing_link_is_an_error)
{
    char path[PATH_MAX], aside[PATH_MAX + 8];
    uint64_t *v = NULL;
    size_t n = 0;
    kv_chain_file *f;
    dpr_err err = DPR_ERR_INIT;
    kv_dict d;

    kv_ckpt_path(path, sizeof(path), dir, 7, 0);
    snprintf(aside, sizeof(aside), "%s.aside", path);
    CHECK_EQ_INT(rename(path, aside), 0);
    f = scan(&v, &n);
    CHECK_EQ_INT(kv_chain_check(f, n, dir, &err), -EBADMSG);
    CHECK(strstr(err.msg, "change log 9 applies to version 7") != NULL);
    CHECK(strstr(err.msg, "a file is missing") != NULL);
    /* restoring 9 anyway: refused, never a keyspace without 7's writes */
    kv_dict_init(&d, seed);
    dpr_err_clear(&err);
    CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, 3, &d, NULL, &err), -EBADMSG);
    CHECK(err.msg[0] != '\0');
    kv_dict_free(&d);
    /* 5 does not need 7 */
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, 2, &d, NULL, &err), 0);
    CHECK(kvtest_same(&d, &state[5]));
    kv_dict_free(&d);
    free(f);
    free(v);
    CHECK_EQ_INT(rename(aside, path), 0);

    /* the first file a change log on a deleted base */
    kv_ckpt_path(path, sizeof(path), dir, 2, 0);
    snprintf(aside, sizeof(aside), "%s.aside", path);
    CHECK_EQ_INT(rename(path, aside), 0);
    f = scan(&v, &n);
    CHECK_EQ_INT(kv_chain_check(f, n, dir, &err), -EBADMSG);
    CHECK(strstr(err.msg, "change log 4 applies to version 2") != NULL);
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, 0, &d, NULL, &err), -EBADMSG);
    CHECK(strstr(err.msg, "no full image before it") != NULL);
    kv_dict_free(&d);
    free(f);
    free(v);
    CHECK_EQ_INT(rename(aside, path), 0);
}

/* A damaged change log fails the versions that need it, with its name. */
TEST(damaged_link_is_an_error)
{
    char path[PATH_MAX];
    uint64_t *v = NULL;
    size_t n = 0;
    kv_chain_file *f;
    dpr_err err = DPR_ERR_INIT;
    kv_dict d;
    FILE *fp;
    int c;

    kv_ckpt_path(path, sizeof(path), dir, 9, 0);
    fp = fopen(path, "r+b");
    CHECK(fp != NULL);
    if (!fp)
        return;
    fseek(fp, 100, SEEK_SET);
    c = fgetc(fp);
    fseek(fp, 100, SEEK_SET);
    fputc(c ^ 0x20, fp);
    fclose(fp);
    f = scan(&v, &n); /* (headers only: fine) */
    CHECK_EQ_INT(kv_chain_check(f, n, dir, &err), 0);
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, 4, &d, NULL, &err), -EBADMSG);
    CHECK(strstr(err.msg, "checkpoint 9 cannot be used") != NULL);
    CHECK(strstr(err.msg, "damaged") != NULL);
    kv_dict_free(&d);
    /* 10 is a full image: it does not need 9 */
    kv_dict_init(&d, seed);
    CHECK_EQ_INT(kv_chain_restore(dir, WORKER, f, n, 5, &d, NULL, &err), 0);
    CHECK(kvtest_same(&d, &state[10]));
    kv_dict_free(&d);
    /* another worker's directory */
    free(f);
    f = NULL;
    CHECK_EQ_INT(kv_chain_scan(dir, WORKER + 1, v, n, &f, &err), -EBADMSG);
    CHECK(strstr(err.msg, "checkpoint 2 cannot be used") != NULL || strstr(err.msg, "worker 7"));
    CHECK(f == NULL);
    free(v);
}

/* A keyspace with a change log records every change it makes (every path of
 * set, append and delete: in place, reallocated, new, absent); the log
 * applied to a copy of the keyspace from before gives the keyspace after. */
TEST(keyspace_records_its_changes)
{
    kv_dict d, before, back;
    kv_ckpt_log l = KV_CKPT_LOG_INIT;
    kv_ckpt_meta m = {WORKER, 1, 101, 0, 0, 0, true, 100}, got;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX], k[32], big[3000];
    size_t newlen;

    kv_dict_init(&d, seed);
    kv_dict_init(&before, seed);
    kv_dict_init(&back, seed);
    for (int i = 0; i < 200; i++) {
        int kl = snprintf(k, sizeof(k), "b%d", i);
        CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, "base", 4, NULL), 0);
    }
    copy_dict(&before, &d);
    kv_dict_set_log(&d, &l);
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 400; i++) {
        int kl = snprintf(k, sizeof(k), "b%d", i % 250);
        switch (i % 6) {
        case 0: /* in place */
            CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, "tiny", 4, NULL), 0);
            break;
        case 1: /* reallocated */
            CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, big, 100 + (size_t)i, NULL), 0);
            break;
        case 2:
            CHECK_EQ_INT(kv_dict_append(&d, k, (size_t)kl, big, (size_t)i * 7, &newlen), 0);
            break;
        case 3:
            (void)kv_dict_delete(&d, k, (size_t)kl);
            break;
        case 4: /* new keys, by add_new and append */
            kl = snprintf(k, sizeof(k), "n%d", i);
            CHECK_EQ_INT(kv_dict_add_new(&d, k, (size_t)kl, "n", 1), 0);
            kl = snprintf(k, sizeof(k), "m%d", i);
            CHECK_EQ_INT(kv_dict_append(&d, k, (size_t)kl, "m", 1, &newlen), 0);
            break;
        default: /* the value from the entry itself */
            if (kv_dict_find(&d, k, (size_t)kl)) {
                kv_entry *e = kv_dict_find(&d, k, (size_t)kl);
                CHECK_EQ_INT(kv_dict_set(&d, k, (size_t)kl, kv_entry_val(e), e->vlen / 2,
                                         NULL), 0);
            }
        }
        kv_dict_cron(&d, 10); /* rehashing is no change */
    }
    CHECK(!dpr_buf_failed(&l.buf));
    CHECK(l.count > 300);
    /* the moved-in content of a swap is not a change of its own */
    uint64_t count = l.count;
    kv_dict other;
    kv_dict_init(&other, seed);
    copy_dict(&other, &d);
    kv_dict_swap(&d, &other);
    CHECK(d.log == &l && other.log == NULL);
    CHECK_EQ_U64(l.count, count);
    kv_dict_free(&other);
    CHECK_EQ_INT(kv_ckpt_write_delta(dir, &m, &l, &err), 0);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 101, 0), 0);
    copy_dict(&back, &before);
    CHECK_EQ_INT(kv_ckpt_apply(path, WORKER, 101, &back, &got, &err), 0);
    CHECK(kvtest_same(&back, &d));
    kv_ckpt_remove(dir, 101);
    kv_ckpt_log_free(&l);
    kv_dict_free(&d);
    kv_dict_free(&before);
    kv_dict_free(&back);
}

static void cleanup(void)
{
    uint64_t *v = NULL;
    size_t n = 0;
    if (kv_ckpt_list(dir, &v, &n) == 0)
        for (size_t i = 0; i < n; i++)
            kv_ckpt_remove(dir, v[i]);
    free(v);
    rmdir(dir);
    for (int i = 0; i < NVERS; i++)
        kv_dict_free(&state[i]);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    build();
    RUN(every_version_is_restored);
    RUN(prunable);
    RUN(missing_link_is_an_error);
    RUN(damaged_link_is_an_error);
    RUN(keyspace_records_its_changes);
    cleanup();
    return check_summary("test_kv_chain");
}
