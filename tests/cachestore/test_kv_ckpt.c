/* test_kv_ckpt.c - dpr-kv's checkpoint files: round trip, and that any
 * damage is detected. Links dpr-kv's modules (libdprkv.a). */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/fs.h"
#include "kv_ckpt.h"
#include "kv_dict.h"
#include "kvtest.h"

static const uint8_t seed[16] = {9, 8, 7};
static char dir[] = "/tmp/test_kv_ckpt.XXXXXX";

static void fill(kv_dict *d, int n)
{
    char k[32], v[64];
    for (int i = 0; i < n; i++) {
        int kl = snprintf(k, sizeof(k), "key%d", i);
        int vl = snprintf(v, sizeof(v), "value-%d-%s", i, i % 3 ? "x" : "");
        kv_dict_set(d, k, (size_t)kl, v, (size_t)vl, NULL);
    }
    kv_dict_set(d, "bin\0key", 7, "\0\r\n\xff", 4, NULL);
    kv_dict_set(d, "", 0, "", 0, NULL);
}


static char *read_file(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    char *p = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && (p = malloc((size_t)st.st_size)) &&
        read(fd, p, (size_t)st.st_size) == st.st_size)
        *len = (size_t)st.st_size;
    if (fd >= 0)
        close(fd);
    return p;
}

static void write_file(const char *path, const char *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        CHECK(write(fd, p, len) == (ssize_t)len);
        close(fd);
    }
}

TEST(round_trip)
{
    kv_dict d, back;
    kv_ckpt_meta m = {42, 3, 17, 0, 1234, 15, false, 0}, got;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];
    kv_dict_init(&d, seed);
    kv_dict_init(&back, seed);
    fill(&d, 3000);
    CHECK_EQ_INT(kv_ckpt_write(dir, &m, &d, &err), 0);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 17, 0), 0);
    CHECK_EQ_INT(kv_ckpt_load(path, 42, 17, &back, &got, &err), 0);
    CHECK(kvtest_same(&d, &back));
    CHECK_EQ_U64(got.world_line, 3);
    CHECK_EQ_U64(got.count, 3002);
    CHECK_EQ_U64(got.created_ms, 1234);
    CHECK_EQ_U64(got.committed, 15);
    kv_ckpt_meta hm;
    CHECK_EQ_INT(kv_ckpt_read_meta(path, &hm, &err), 0);
    CHECK_EQ_U64(hm.version, 17);
    CHECK_EQ_U64(hm.committed, 15);
    memset(&hm, 0, sizeof(hm));
    CHECK_EQ_INT(kv_ckpt_verify(path, 42, 17, &hm, &err), 0);
    CHECK_EQ_U64(hm.count, 3002);
    /* wrong worker or version */
    kv_dict_free(&back);
    CHECK_EQ_INT(kv_ckpt_load(path, 41, 17, &back, &got, &err), -EBADMSG);
    CHECK(strstr(err.msg, "belongs to worker 42") != NULL);
    CHECK_EQ_INT(err.code, -EBADMSG);
    kv_dict_free(&back);
    CHECK_EQ_INT(kv_ckpt_load(path, 42, 18, &back, &got, &err), -EBADMSG);
    kv_dict_free(&back);
    kv_dict_free(&d);
}

/* A compaction of several MiB (written paced, a MiB at a time sent to the
 * disk) is the same file, byte for byte, as the unpaced full image of the
 * same version, and installs as that version. */
TEST(compaction_is_the_full_image)
{
    kv_dict d, back;
    kv_ckpt_meta m = {42, 3, 21, 0, 1234, 15, false, 0}, got;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX], full[PATH_MAX];
    size_t n1 = 0, n2 = 0;
    kv_dict_init(&d, seed);
    kv_dict_init(&back, seed);
    fill(&d, 300000); /* about 7 MiB */
    CHECK_EQ_INT(kv_ckpt_write(dir, &m, &d, &err), 0);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 21, 0), 0);
    snprintf(full, sizeof(full), "%s/ckpt-21%s", dir, KV_CKPT_COMPACT_SUFFIX);
    char *a = read_file(path, &n1);
    CHECK(a != NULL && n1 > (size_t)4 << 20);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK_EQ_INT(kv_ckpt_write_compaction(dir, &m, &d, &err), 0);
    char *b = read_file(full, &n2);
    CHECK(b != NULL && n1 == n2 && memcmp(a, b, n1) == 0);
    CHECK_EQ_INT(kv_ckpt_install_compaction(dir, 21, &err), 0);
    CHECK(access(full, F_OK) < 0);
    CHECK_EQ_INT(kv_ckpt_load(path, 42, 21, &back, &got, &err), 0);
    CHECK(kvtest_same(&d, &back));
    CHECK_EQ_INT(unlink(path), 0);
    free(a);
    free(b);
    kv_dict_free(&back);
    kv_dict_free(&d);
}

/* Flipping any single byte, or truncating anywhere, is detected. */
TEST(any_damage_is_detected)
{
    kv_dict d, back;
    kv_ckpt_meta m = {1, 1, 5, 0, 0, 4, false, 0}, got;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];
    size_t len = 0;
    kv_dict_init(&d, seed);
    fill(&d, 20);
    CHECK_EQ_INT(kv_ckpt_write(dir, &m, &d, &err), 0);
    kv_ckpt_path(path, sizeof(path), dir, 5, 0);
    char *orig = read_file(path, &len);
    CHECK(orig != NULL && len > KV_CKPT_HEADER + KV_CKPT_TRAILER);
    if (!orig)
        return;
    char *copy = malloc(len);
    int undetected = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, orig, len);
        copy[i] ^= 0x01;
        write_file(path, copy, len);
        kv_dict_init(&back, seed);
        dpr_err_clear(&err);
        if (kv_ckpt_load(path, 1, 5, &back, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++; /* every damage is -EBADMSG with a message */
        kv_dict_free(&back);
        dpr_err_clear(&err);
        if (kv_ckpt_verify(path, 1, 5, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++; /* the check without loading sees the same */
    }
    CHECK_EQ_INT(undetected, 0);
    for (size_t cut = 0; cut < len; cut += 7) {
        write_file(path, orig, cut);
        kv_dict_init(&back, seed);
        dpr_err_clear(&err);
        if (kv_ckpt_load(path, 1, 5, &back, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++; /* every damage is -EBADMSG with a message */
        kv_dict_free(&back);
        dpr_err_clear(&err);
        if (kv_ckpt_verify(path, 1, 5, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++;
    }
    CHECK_EQ_INT(undetected, 0);
    write_file(path, orig, len);
    kv_dict_init(&back, seed);
    CHECK_EQ_INT(kv_ckpt_load(path, 1, 5, &back, &got, &err), 0);
    kv_dict_free(&back);
    free(copy);
    free(orig);
    kv_dict_free(&d);
}

TEST(directory)
{
    kv_dict d;
    kv_ckpt_meta m = {1, 1, 0, 0, 0, 0, false, 0};
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];
    uint64_t *v = NULL;
    size_t n = 0;
    kv_dict_init(&d, seed);
    for (uint64_t ver = 100; ver <= 102; ver++) {
        m.version = ver;
        CHECK_EQ_INT(kv_ckpt_write(dir, &m, &d, &err), 0);
    }
    kv_ckpt_path(path, sizeof(path), dir, 7, 1);
    close(open(path, O_CREAT | O_WRONLY, 0600)); /* a leftover temporary file */
    snprintf(path, sizeof(path), "%s/ckpt-007.kv", dir); /* not one of ours */
    close(open(path, O_CREAT | O_WRONLY, 0600));
    CHECK_EQ_INT(kv_ckpt_list(dir, &v, &n), 0);
    /* 5 and 17 from the tests above, then 100..102 */
    CHECK_EQ_U64(n, 5);
    if (n == 5)
        CHECK(v[0] == 5 && v[1] == 17 && v[2] == 100 && v[4] == 102);
    free(v);
    CHECK_EQ_INT(kv_ckpt_remove_tmp(dir), 0);
    kv_ckpt_path(path, sizeof(path), dir, 7, 1);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(kv_ckpt_remove(dir, 101), 0);
    CHECK_EQ_INT(kv_ckpt_remove(dir, 101), 0); /* already gone: fine */
    CHECK_EQ_INT(kv_ckpt_list(dir, &v, &n), 0);
    CHECK_EQ_U64(n, 4);
    free(v);
    CHECK_EQ_INT(dpr_fsync_dir(dir), 0);
    /* a failing write leaves no temporary file behind */
    m.version = 200;
    kv_ckpt_path(path, sizeof(path), dir, 200, 0);
    CHECK_EQ_INT(mkdir(path, 0700), 0); /* rename onto a directory fails */
    CHECK(kv_ckpt_write(dir, &m, &d, &err) < 0);
    CHECK(strstr(err.msg, "rename") != NULL);
    kv_ckpt_path(path, sizeof(path), dir, 200, 1);
    CHECK(access(path, F_OK) != 0);
    kv_ckpt_path(path, sizeof(path), dir, 200, 0);
    rmdir(path);
    kv_dict_free(&d);
}

/* Files of format 1 (a 56-byte header without `committed`) are still read,
 * as committed 0. */
TEST(format_1_is_read)
{
    kv_dict d, back;
    kv_ckpt_meta m = {7, 2, 9, 0, 99, 8, false, 0}, got;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];
    size_t len = 0;
    kv_dict_init(&d, seed);
    fill(&d, 50);
    CHECK_EQ_INT(kv_ckpt_write(dir, &m, &d, &err), 0);
    kv_ckpt_path(path, sizeof(path), dir, 9, 0);
    char *v2 = read_file(path, &len);
    CHECK(v2 != NULL && len > KV_CKPT_HEADER + KV_CKPT_TRAILER);
    if (!v2)
        return;
    /* the same file in format 1: no committed field, format 1, new CRC */
    size_t len1 = len - (KV_CKPT_HEADER - KV_CKPT_HEADER_V1);
    char *v1 = malloc(len1);
    memcpy(v1, v2, KV_CKPT_HEADER_V1);
    memcpy(v1 + KV_CKPT_HEADER_V1, v2 + KV_CKPT_HEADER, len - KV_CKPT_HEADER);
    v1[8] = 1;
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)v1, (uInt)(len1 - 4));
    for (int i = 0; i < 4; i++)
        v1[len1 - 4 + i] = (char)(crc >> (8 * i));
    write_file(path, v1, len1);
    CHECK_EQ_INT(truncate(path, (off_t)len1), 0);
    kv_dict_init(&back, seed);
    CHECK_EQ_INT(kv_ckpt_load(path, 7, 9, &back, &got, &err), 0);
    CHECK(kvtest_same(&d, &back));
    CHECK_EQ_U64(got.world_line, 2);
    CHECK_EQ_U64(got.committed, 0);
    kv_ckpt_meta hm;
    CHECK_EQ_INT(kv_ckpt_read_meta(path, &hm, &err), 0);
    CHECK_EQ_U64(hm.version, 9);
    CHECK_EQ_U64(hm.committed, 0);
    /* format 4 does not exist */
    v1[8] = 4;
    write_file(path, v1, len1);
    CHECK_EQ_INT(kv_ckpt_read_meta(path, &hm, &err), -EBADMSG);
    CHECK(strstr(err.msg, "unsupported checkpoint format 4") != NULL);
    kv_ckpt_remove(dir, 9);
    kv_dict_free(&back);
    kv_dict_free(&d);
    free(v1);
    free(v2);
}

/* --seed-dir: a worker moved to this node takes over the checkpoints copied
 * from its previous node. Every complete checkpoint is copied, byte for
 * byte and durably; nothing else is; the copies load as the originals. */
TEST(seed_copies_checkpoints)
{
    char src[PATH_MAX], dst[PATH_MAX], path[PATH_MAX], other[PATH_MAX];
    kv_dict d, got;
    kv_ckpt_meta m = {5, 2, 0, 0, 0, 1, false, 0}, mm;
    dpr_err err = DPR_ERR_INIT;
    uint64_t *v = NULL;
    size_t n = 0, copied = 99, la = 0, lb = 0;
    char *a, *b;

    CHECK_EQ_INT(dpr_path_join(src, sizeof(src), dir, "seed"), 0);
    CHECK_EQ_INT(dpr_path_join(dst, sizeof(dst), dir, "state"), 0);
    CHECK_EQ_INT(mkdir(src, 0700), 0);
    CHECK_EQ_INT(mkdir(dst, 0700), 0);
    /* an empty seed: nothing to copy */
    CHECK_EQ_INT(kv_ckpt_seed(dst, src, &copied, &err), 0);
    CHECK_EQ_U64(copied, 0);
    kv_dict_init(&d, seed);
    fill(&d, 300);
    for (uint64_t ver = 3; ver <= 4; ver++) {
        m.version = ver;
        CHECK_EQ_INT(kv_ckpt_write(src, &m, &d, &err), 0);
    }
    kv_ckpt_path(path, sizeof(path), src, 9, 1); /* a copy still being made there */
    close(open(path, O_CREAT | O_WRONLY, 0600));
    CHECK_EQ_INT(dpr_path_join(other, sizeof(other), src, "notes.txt"), 0);
    close(open(other, O_CREAT | O_WRONLY, 0600));
    CHECK_EQ_INT(kv_ckpt_seed(dst, src, &copied, &err), 0);
    CHECK_EQ_U64(copied, 2);
    CHECK_EQ_INT(kv_ckpt_list(dst, &v, &n), 0);
    CHECK_EQ_U64(n, 2);
    if (n == 2)
        CHECK(v[0] == 3 && v[1] == 4);
    free(v);
    kv_ckpt_path(path, sizeof(path), dst, 9, 1);
    CHECK(access(path, F_OK) != 0); /* no temporary file copied or left */
    kv_ckpt_path(path, sizeof(path), dst, 4, 1);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(dpr_path_join(path, sizeof(path), dst, "notes.txt"), 0);
    CHECK(access(path, F_OK) != 0);
    kv_ckpt_path(path, sizeof(path), src, 4, 0);
    a = read_file(path, &la);
    kv_ckpt_path(path, sizeof(path), dst, 4, 0);
    b = read_file(path, &lb);
    CHECK(a && b && la == lb && la > 0 && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    kv_dict_init(&got, seed);
    CHECK_EQ_INT(kv_ckpt_load(path, 5, 4, &got, &mm, &err), 0);
    CHECK(kvtest_same(&d, &got));
    CHECK_EQ_U64(mm.world_line, 2);
    kv_dict_free(&got);

    /* a missing seed directory: -ENOENT; one that cannot be read: an error
     * naming it; a copy that fails leaves no temporary file */
    CHECK_EQ_INT(dpr_path_join(path, sizeof(path), dir, "missing"), 0);
    CHECK_EQ_INT(kv_ckpt_seed(dst, path, &copied, &err), -ENOENT);
    CHECK_EQ_U64(copied, 0);
    CHECK_EQ_INT(kv_ckpt_seed(dst, other, &copied, &err), -ENOTDIR);
    CHECK(strstr(err.msg, "notes.txt") != NULL);
    kv_ckpt_path(path, sizeof(path), dst, 3, 0);
    CHECK_EQ_INT(unlink(path), 0);
    CHECK_EQ_INT(mkdir(path, 0700), 0); /* renaming the copy of 3 onto a directory fails */
    CHECK(kv_ckpt_seed(dst, src, &copied, &err) < 0);
    CHECK(strstr(err.msg, "rename") != NULL);
    CHECK_EQ_U64(copied, 1); /* the newest first: 4 is there, 3 is not */
    kv_ckpt_path(path, sizeof(path), dst, 3, 1);
    CHECK(access(path, F_OK) != 0);
    kv_ckpt_path(path, sizeof(path), dst, 3, 0);
    rmdir(path);

    /* clean up */
    for (uint64_t ver = 3; ver <= 4; ver++) {
        kv_ckpt_remove(src, ver);
        kv_ckpt_remove(dst, ver);
    }
    kv_ckpt_path(path, sizeof(path), src, 9, 1);
    unlink(path);
    unlink(other);
    CHECK_EQ_INT(rmdir(src), 0);
    CHECK_EQ_INT(rmdir(dst), 0);
    kv_dict_free(&d);
}

/* A change log's operations, applied the way the server executes them:
 * on `truth` (what the keyspace becomes) and into the log. */
static void op(kv_dict *truth, kv_ckpt_log *l, enum kv_ckpt_op o, const char *k, size_t kl,
               const char *v, size_t vl)
{
    size_t newlen;
    if (o == KV_CKPT_OP_SET)
        CHECK_EQ_INT(kv_dict_set(truth, k, kl, v, vl, NULL), 0);
    else if (o == KV_CKPT_OP_DEL)
        (void)kv_dict_delete(truth, k, kl);
    else
        CHECK_EQ_INT(kv_dict_append(truth, k, kl, v, vl, &newlen), 0);
    CHECK_EQ_INT(kv_ckpt_log_add(l, o, k, kl, v, vl), 0);
}

static void some_ops(kv_dict *truth, kv_ckpt_log *l)
{
    op(truth, l, KV_CKPT_OP_SET, "key1", 4, "changed", 7);     /* overwrite */
    op(truth, l, KV_CKPT_OP_SET, "fresh", 5, "new", 3);        /* create */
    op(truth, l, KV_CKPT_OP_DEL, "key2", 4, NULL, 0);          /* delete */
    op(truth, l, KV_CKPT_OP_DEL, "never", 5, NULL, 0);         /* delete absent */
    op(truth, l, KV_CKPT_OP_APPEND, "key3", 4, "+tail", 5);    /* append */
    op(truth, l, KV_CKPT_OP_APPEND, "made", 4, "by-append", 9);/* append creates */
    op(truth, l, KV_CKPT_OP_SET, "fresh", 5, "", 0);           /* empty value */
    op(truth, l, KV_CKPT_OP_DEL, "fresh", 5, NULL, 0);         /* created, then gone */
    op(truth, l, KV_CKPT_OP_SET, "bin\0\r\n", 5, "\0\xff", 2); /* binary */
    op(truth, l, KV_CKPT_OP_SET, "", 0, "empty key", 9);
}

static void copy_dict(kv_dict *dst, kv_dict *src)
{
    CHECK_EQ_INT(kvtest_copy(dst, src), 0);
}

/* A change log applied to its base gives exactly what the writes made. */
TEST(change_log_round_trip)
{
    kv_dict base, truth, back;
    kv_ckpt_meta full = {42, 3, 10, 0, 1, 9, false, 0}, dm = {42, 3, 12, 0, 2, 10, true, 10};
    kv_ckpt_meta got;
    kv_ckpt_log l = KV_CKPT_LOG_INIT;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];

    kv_dict_init(&base, seed);
    kv_dict_init(&truth, seed);
    kv_dict_init(&back, seed);
    fill(&base, 50);
    copy_dict(&truth, &base);
    some_ops(&truth, &l);
    CHECK_EQ_INT(kv_ckpt_write(dir, &full, &base, &err), 0);
    CHECK_EQ_INT(kv_ckpt_write_delta(dir, &dm, &l, &err), 0);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 12, 0), 0);
    CHECK_EQ_INT(kv_ckpt_read_meta(path, &got, &err), 0);
    CHECK(got.delta);
    CHECK_EQ_U64(got.base, 10);
    CHECK_EQ_U64(got.count, 10);
    CHECK_EQ_U64(got.committed, 10);
    CHECK_EQ_INT(kv_ckpt_verify(path, 42, 12, &got, &err), 0);
    /* a change log is not a full image */
    CHECK_EQ_INT(kv_ckpt_load(path, 42, 12, &back, &got, &err), -EBADMSG);
    CHECK(strstr(err.msg, "change log on version 10") != NULL);
    /* full image, then the change log */
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 10, 0), 0);
    CHECK_EQ_INT(kv_ckpt_apply(path, 42, 10, &back, &got, &err), 0);
    CHECK(!got.delta);
    CHECK(kvtest_same(&base, &back));
    /* a full image only loads into an empty keyspace */
    CHECK_EQ_INT(kv_ckpt_apply(path, 42, 10, &back, &got, &err), -EINVAL);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 12, 0), 0);
    CHECK_EQ_INT(kv_ckpt_apply(path, 42, 12, &back, &got, &err), 0);
    CHECK(kvtest_same(&truth, &back));
    /* bad arguments and logs */
    dm.base = 12;
    CHECK_EQ_INT(kv_ckpt_write_delta(dir, &dm, &l, &err), -EINVAL);
    CHECK_EQ_INT(kv_ckpt_log_add(&l, KV_CKPT_OP_DEL, "k", 1, "v", 1), -EINVAL);
    CHECK_EQ_INT(kv_ckpt_log_add(&l, (enum kv_ckpt_op)9, "k", 1, "v", 1), -EINVAL);
    CHECK_EQ_U64(l.count, 10);
    /* an empty change log (a version without writes that still has a file) */
    kv_ckpt_log_reset(&l);
    dm.version = 13;
    dm.base = 12;
    CHECK_EQ_INT(kv_ckpt_write_delta(dir, &dm, &l, &err), 0);
    CHECK_EQ_INT(kv_ckpt_path(path, sizeof(path), dir, 13, 0), 0);
    CHECK_EQ_INT(kv_ckpt_apply(path, 42, 13, &back, &got, &err), 0);
    CHECK(kvtest_same(&truth, &back));
    kv_ckpt_remove(dir, 10);
    kv_ckpt_remove(dir, 12);
    kv_ckpt_remove(dir, 13);
    kv_ckpt_log_free(&l);
    kv_dict_free(&base);
    kv_dict_free(&truth);
    kv_dict_free(&back);
}

/* Any flipped byte or truncation of a change log is -EBADMSG with a message,
 * and leaves the keyspace it was applied to untouched. */
TEST(change_log_damage_is_detected)
{
    kv_dict base, truth, back;
    kv_ckpt_meta dm = {1, 1, 5, 0, 0, 4, true, 3}, got;
    kv_ckpt_log l = KV_CKPT_LOG_INIT;
    dpr_err err = DPR_ERR_INIT;
    char path[PATH_MAX];
    size_t len = 0;
    int undetected = 0, touched = 0;

    kv_dict_init(&base, seed);
    kv_dict_init(&truth, seed);
    fill(&base, 10);
    copy_dict(&truth, &base);
    some_ops(&truth, &l);
    CHECK_EQ_INT(kv_ckpt_write_delta(dir, &dm, &l, &err), 0);
    kv_ckpt_path(path, sizeof(path), dir, 5, 0);
    char *orig = read_file(path, &len);
    CHECK(orig != NULL && len > KV_CKPT_HEADER_V3 + KV_CKPT_TRAILER);
    if (!orig)
        return;
    char *copy = malloc(len);
    for (size_t i = 0; i < len + (len + 6) / 7; i++) {
        /* every byte flipped, then truncations */
        size_t n = i < len ? len : (i - len) * 7;
        memcpy(copy, orig, len);
        if (i < len)
            copy[i] ^= 0x01;
        write_file(path, copy, n);
        CHECK_EQ_INT(truncate(path, (off_t)n), 0);
        kv_dict_init(&back, seed);
        copy_dict(&back, &base);
        dpr_err_clear(&err);
        if (kv_ckpt_apply(path, 1, 5, &back, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++;
        if (!kvtest_same(&back, &base))
            touched++;
        kv_dict_free(&back);
        dpr_err_clear(&err);
        if (kv_ckpt_verify(path, 1, 5, &got, &err) != -EBADMSG || !err.msg[0])
            undetected++;
    }
    CHECK_EQ_INT(undetected, 0);
    CHECK_EQ_INT(touched, 0);
    kv_ckpt_remove(dir, 5);
    free(copy);
    free(orig);
    kv_ckpt_log_free(&l);
    kv_dict_free(&base);
    kv_dict_free(&truth);
}

static void cleanup_dir(void)
{
    uint64_t *v = NULL;
    size_t n = 0;
    char path[PATH_MAX];
    if (kv_ckpt_list(dir, &v, &n) == 0)
        for (size_t i = 0; i < n; i++)
            kv_ckpt_remove(dir, v[i]);
    free(v);
    snprintf(path, sizeof(path), "%s/ckpt-007.kv", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(round_trip);
    RUN(compaction_is_the_full_image);
    RUN(any_damage_is_detected);
    RUN(directory);
    RUN(format_1_is_read);
    RUN(seed_copies_checkpoints);
    RUN(change_log_round_trip);
    RUN(change_log_damage_is_detected);
    cleanup_dir();
    return check_summary("test_kv_ckpt");
}
