/* kv_ckpt.c - see kv_ckpt.h. */
#include "kv_ckpt.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "common/err.h"
#include "common/fs.h"
#include "dpr/wire.h" /* dpr_put_u64 & co. */

#define WBUF_SIZE (1u << 20)
/* A compaction's data is sent to the disk every WB_CHUNK bytes, and the
 * chunk before is waited for, so that a full image of gigabytes never piles
 * up as dirty page cache or as a long device queue: the change logs' fsyncs,
 * which commits wait for, then find at most two chunks ahead of them. (A
 * full-mode checkpoint is what commits wait for itself: it is not paced.) */
#define WB_CHUNK ((off_t)WBUF_SIZE / 2) /* so each flush of the buffer, about 1 MiB, is one */
#define CRC_CHUNK (1u << 30)

static uLong crc_update(uLong crc, const void *p, size_t n)
{
    const Bytef *b = p;
    while (n > 0) {
        uInt k = n > CRC_CHUNK ? CRC_CHUNK : (uInt)n;
        crc = crc32(crc, b, k);
        b += k;
        n -= k;
    }
    return crc;
}

/* "<dir>/ckpt-<v><suffix>" */
static int name_path(char *buf, size_t cap, const char *dir, uint64_t version, const char *suffix)
{
    int n = snprintf(buf, cap, "%s/ckpt-%llu%s", dir, (unsigned long long)version, suffix);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int kv_ckpt_path(char *buf, size_t cap, const char *dir, uint64_t version, int tmp)
{
    return name_path(buf, cap, dir, version, tmp ? ".kv.tmp" : ".kv");
}

/* --- writing ------------------------------------------------------------ */

typedef struct wbuf {
    int fd;
    char *buf;
    size_t cap; /* of buf */
    size_t len;
    uLong crc;
    off_t off;    /* bytes written to fd */
    off_t queued; /* bytes sent to the disk (sync_file_range) */
    off_t prev;   /* where the chunk sent last, [prev, queued), starts */
    bool pace;    /* a compaction: send each chunk to the disk (wpace) */
} wbuf;

/* Sends [queued, off) to the disk once it is a chunk, then waits for the
 * chunk sent before it. Only pacing: the final fsync is what makes the file
 * durable, so a file system without sync_file_range (EINVAL, ENOSYS) skips
 * it. */
static int wpace(wbuf *w)
{
    const unsigned wait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                          SYNC_FILE_RANGE_WAIT_AFTER;
    off_t prev = w->prev;

    if (!w->pace || w->off - w->queued < WB_CHUNK)
        return 0;
    w->prev = w->queued;
    if (sync_file_range(w->fd, w->queued, w->off - w->queued, SYNC_FILE_RANGE_WRITE) < 0 ||
        (w->queued > 0 && sync_file_range(w->fd, prev, w->queued - prev, wait) < 0)) {
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
    }
    w->queued = w->off;
    return 0;
}

static int wraw(wbuf *w, const void *p, size_t n)
{
    int r = dpr_write_all(w->fd, p, n);
    if (r < 0)
        return r;
    w->off += (off_t)n;
    return wpace(w);
}

static int wflush(wbuf *w)
{
    int r = wraw(w, w->buf, w->len);
    w->len = 0;
    return r;
}

static int wput(wbuf *w, const void *p, size_t n)
{
    int r = 0;
    w->crc = crc_update(w->crc, p, n);
    if (n > w->cap / 2) {
        r = wflush(w);
        if (r == 0)
            r = wraw(w, p, n);
        return r;
    }
    if (w->cap - w->len < n)
        r = wflush(w);
    if (r == 0) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
    return r;
}

/* Full images keep format 2 (what older dpr-kv reads); change logs are format 3.
 * Returns the header's length. */
static size_t encode_header(uint8_t h[KV_CKPT_HEADER_V3], const kv_ckpt_meta *m)
{
    memcpy(h, KV_CKPT_MAGIC, 8);
    dpr_put_u32(h + 8, m->delta ? KV_CKPT_FORMAT_DELTA : KV_CKPT_FORMAT);
    dpr_put_u32(h + 12, m->delta ? KV_CKPT_F_DELTA : 0);
    dpr_put_u64(h + 16, m->worker);
    dpr_put_u64(h + 24, m->world_line);
    dpr_put_u64(h + 32, m->version);
    dpr_put_u64(h + 40, m->count);
    dpr_put_u64(h + 48, m->created_ms);
    dpr_put_u64(h + 56, m->committed);
    if (!m->delta)
        return KV_CKPT_HEADER;
    dpr_put_u64(h + 64, m->base);
    return KV_CKPT_HEADER_V3;
}

static int write_records(wbuf *w, const kv_dict *d)
{
    size_t it[2] = {0, 0};
    kv_entry *e = NULL;
    uint8_t lens[8];
    int r = 0;

    while (r == 0 && (e = kv_dict_next(d, it, e))) {
        dpr_put_u32(lens, e->klen);
        dpr_put_u32(lens + 4, e->vlen);
        r = wput(w, lens, 8);
        if (r == 0)
            r = wput(w, e->data, (size_t)e->klen + e->vlen);
    }
    return r;
}

/* Writes a full image of d, or (d NULL) the change log l, as
 * ckpt-<v><suffix> (through <suffix>.tmp). */
static int write_ckpt(const char *dir, const kv_ckpt_meta *m, const kv_dict *d,
                      const kv_ckpt_log *l, const char *suffix, bool pace, dpr_err *err)
{
    char tsuffix[32];
    char tmp[PATH_MAX], final[PATH_MAX];
    uint8_t header[KV_CKPT_HEADER_V3], crcb[4];
    kv_ckpt_meta meta = *m;
    /* A change log is one buffer already, written as it is (wput): the
     * small buffer only gathers its header, end mark and CRC. A 1 MiB
     * buffer in the writer thread counted as used memory while the log was
     * written (maxmemory refused writes early: kv_server.c, sample_memory). */
    char small[4096];
    wbuf w = {-1, small, sizeof(small), 0, 0, 0, 0, 0, pace};
    const char *step = "open";
    int r;

    snprintf(tsuffix, sizeof(tsuffix), "%s.tmp", suffix);
    r = name_path(tmp, sizeof(tmp), dir, m->version, tsuffix);
    if (r == 0)
        r = name_path(final, sizeof(final), dir, m->version, suffix);
    if (r < 0)
        return dpr_err_set(err, r, "state directory path too long");
    if (d) {
        w.buf = malloc(WBUF_SIZE);
        w.cap = WBUF_SIZE;
        if (!w.buf) {
            r = -ENOMEM;
            step = "allocate buffer for";
            goto fail;
        }
    }
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        r = -errno;
        goto fail;
    }
    w.crc = crc32(0L, Z_NULL, 0);
    meta.delta = d == NULL;
    meta.count = d ? kv_dict_size(d) : l->count;
    if (d)
        meta.base = 0;
    step = "write";
    r = wput(&w, header, encode_header(header, &meta));
    if (r == 0)
        r = d ? write_records(&w, d) : l->buf.len ? wput(&w, l->buf.data, l->buf.len) : 0;
    if (r == 0)
        r = wput(&w, KV_CKPT_END, 8);
    if (r == 0) {
        dpr_put_u32(crcb, (uint32_t)w.crc);
        r = wput(&w, crcb, 4);
    }
    if (r == 0)
        r = wflush(&w);
    if (r < 0)
        goto fail;
    step = "fsync";
    if (fsync(w.fd) < 0) {
        r = -errno;
        goto fail;
    }
    step = "close";
    r = close(w.fd);
    w.fd = -1;
    if (r < 0) {
        r = -errno;
        goto fail;
    }
    step = "rename";
    if (rename(tmp, final) < 0) {
        r = -errno;
        goto fail;
    }
    if (w.buf != small)
        free(w.buf);
    r = dpr_fsync_dir(dir);
    if (r < 0)
        return dpr_err_set(err, r, "fsync of directory %s failed: %s", dir, strerror(-r));
    return 0;
fail:
    if (w.fd >= 0)
        close(w.fd);
    unlink(tmp);
    if (w.buf != small)
        free(w.buf);
    return dpr_err_set(err, r, "cannot %s %s: %s", step, tmp, strerror(-r));
}

int kv_ckpt_write(const char *dir, const kv_ckpt_meta *m, const kv_dict *d, dpr_err *err)
{
    return write_ckpt(dir, m, d, NULL, ".kv", false, err);
}

int kv_ckpt_write_compaction(const char *dir, const kv_ckpt_meta *m, const kv_dict *d,
                             dpr_err *err)
{
    return write_ckpt(dir, m, d, NULL, KV_CKPT_COMPACT_SUFFIX, true, err);
}

int kv_ckpt_install_compaction(const char *dir, uint64_t version, dpr_err *err)
{
    char from[PATH_MAX], to[PATH_MAX];
    int r = name_path(from, sizeof(from), dir, version, KV_CKPT_COMPACT_SUFFIX);

    if (r == 0)
        r = kv_ckpt_path(to, sizeof(to), dir, version, 0);
    if (r < 0)
        return dpr_err_set(err, r, "state directory path too long");
    if (rename(from, to) < 0) {
        r = -errno;
        return dpr_err_set(err, r, "cannot rename %s: %s", from, strerror(-r));
    }
    r = dpr_fsync_dir(dir);
    if (r < 0)
        return dpr_err_set(err, r, "fsync of directory %s failed: %s", dir, strerror(-r));
    return 0;
}

int kv_ckpt_remove_compaction(const char *dir, uint64_t version)
{
    char path[PATH_MAX];
    int r = name_path(path, sizeof(path), dir, version, KV_CKPT_COMPACT_SUFFIX);

    if (r == 0 && unlink(path) < 0 && errno != ENOENT)
        r = -errno;
    if (r == 0)
        r = name_path(path, sizeof(path), dir, version, KV_CKPT_COMPACT_SUFFIX ".tmp");
    if (r == 0 && unlink(path) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}

int kv_ckpt_write_delta(const char *dir, const kv_ckpt_meta *m, const kv_ckpt_log *l,
                        dpr_err *err)
{
    if (m->base >= m->version)
        return dpr_err_set(err, -EINVAL, "change log %llu cannot apply to version %llu",
                           (unsigned long long)m->version, (unsigned long long)m->base);
    if (dpr_buf_failed(&l->buf))
        return dpr_err_set(err, -ENOMEM, "change log %llu is incomplete (out of memory)",
                           (unsigned long long)m->version);
    return write_ckpt(dir, m, NULL, l, ".kv", false, err);
}

/* --- change logs in memory ----------------------------------------------- */

int kv_ckpt_log_add(kv_ckpt_log *l, enum kv_ckpt_op op, const char *key, size_t klen,
                    const char *val, size_t vlen)
{
    uint8_t h[KV_CKPT_REC_HEADER];

    if (op != KV_CKPT_OP_SET && op != KV_CKPT_OP_DEL && op != KV_CKPT_OP_APPEND)
        return -EINVAL;
    if (op == KV_CKPT_OP_DEL && vlen)
        return -EINVAL;
    if (klen > KV_DICT_MAX_LEN || vlen > KV_DICT_MAX_LEN)
        return -E2BIG;
    h[0] = (uint8_t)op;
    dpr_put_u32(h + 1, (uint32_t)klen);
    dpr_put_u32(h + 5, (uint32_t)vlen);
    if (dpr_buf_reserve(&l->buf, sizeof(h) + klen + vlen) < 0) {
        l->buf.failed = true;
        return -ENOMEM;
    }
    dpr_buf_append(&l->buf, h, sizeof(h));
    dpr_buf_append(&l->buf, key, klen);
    dpr_buf_append(&l->buf, val, vlen);
    l->count++;
    return 0;
}

void kv_ckpt_log_reset(kv_ckpt_log *l)
{
    dpr_buf_reset(&l->buf);
    l->count = 0;
}

void kv_ckpt_log_free(kv_ckpt_log *l)
{
    dpr_buf_free(&l->buf);
    l->count = 0;
}

/* --- reading ------------------------------------------------------------ */

/* avail: bytes of the file at h (at least KV_CKPT_HEADER_V1); *hlen gets the
 * header's length for its format. */
static int decode_header(const uint8_t *h, size_t avail, kv_ckpt_meta *m, size_t *hlen,
                         const char *path, dpr_err *err)
{
    if (memcmp(h, KV_CKPT_MAGIC, 8) != 0)
        return dpr_err_set(err, -EBADMSG, "%s is not a dpr-kv checkpoint (bad magic)", path);
    uint32_t format = dpr_get_u32(h + 8), flags = dpr_get_u32(h + 12);
    bool ok = format == 1 || format == KV_CKPT_FORMAT ? flags == 0
              : format == KV_CKPT_FORMAT_DELTA    ? (flags & ~KV_CKPT_F_DELTA) == 0
                                                  : false;
    if (!ok)
        return dpr_err_set(err, -EBADMSG, "%s: unsupported checkpoint format %u (flags %u)", path,
                           (unsigned)format, (unsigned)flags);
    *hlen = format == 1 ? KV_CKPT_HEADER_V1
            : format == KV_CKPT_FORMAT ? KV_CKPT_HEADER
                                       : KV_CKPT_HEADER_V3;
    if (avail < *hlen)
        return dpr_err_set(err, -EBADMSG, "%s is truncated (%zu bytes)", path, avail);
    m->worker = dpr_get_u64(h + 16);
    m->world_line = dpr_get_u64(h + 24);
    m->version = dpr_get_u64(h + 32);
    m->count = dpr_get_u64(h + 40);
    m->created_ms = dpr_get_u64(h + 48);
    m->committed = format == 1 ? 0 : dpr_get_u64(h + 56);
    m->delta = (flags & KV_CKPT_F_DELTA) != 0;
    m->base = format == KV_CKPT_FORMAT_DELTA ? dpr_get_u64(h + 64) : 0;
    if (m->delta ? m->base >= m->version : m->base != 0)
        return dpr_err_set(err, -EBADMSG, "%s is damaged: its header makes it a %s of "
                           "version %llu on base version %llu", path,
                           m->delta ? "change log" : "full image",
                           (unsigned long long)m->version, (unsigned long long)m->base);
    return 0;
}

int kv_ckpt_read_meta(const char *path, kv_ckpt_meta *m, dpr_err *err)
{
    uint8_t h[KV_CKPT_HEADER_V3];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0) {
        r = -errno;
        return dpr_err_set(err, r, "cannot open %s: %s", path, strerror(-r));
    }
    do {
        n = pread(fd, h, sizeof(h), 0);
    } while (n < 0 && errno == EINTR);
    r = n < 0 ? -errno : 0;
    close(fd);
    if (r < 0)
        return dpr_err_set(err, r, "cannot read %s: %s", path, strerror(-r));
    if ((size_t)n < KV_CKPT_HEADER_V1)
        return dpr_err_set(err, -EBADMSG, "%s is truncated (%zd bytes)", path, n);
    size_t hlen;
    return decode_header(h, (size_t)n, m, &hlen, path, err);
}

/* Walks the records after the header (hlen bytes); adds them to d unless d
 * is NULL (verification only). */
static int load_records(const uint8_t *p, size_t size, size_t hlen, const kv_ckpt_meta *m,
                        kv_dict *d, const char *path, dpr_err *err)
{
    size_t pos = hlen, end = size - KV_CKPT_TRAILER;
    uint64_t i;
    int r;

    if (m->count > (end - pos) / 8)
        return dpr_err_set(err, -EBADMSG, "%s: record count %llu does not fit the file", path,
                           (unsigned long long)m->count);
    r = d ? kv_dict_reserve(d, (size_t)m->count) : 0;
    if (r < 0)
        goto oom;
    for (i = 0; i < m->count; i++) {
        if (end - pos < 8)
            goto short_file;
        size_t klen = dpr_get_u32(p + pos), vlen = dpr_get_u32(p + pos + 4);
        pos += 8;
        if (end - pos < klen || end - pos - klen < vlen)
            goto short_file;
        if (d) {
            r = kv_dict_add_new(d, (const char *)p + pos, klen, (const char *)p + pos + klen, vlen);
            if (r < 0)
                goto oom;
        }
        pos += klen + vlen;
    }
    if (pos != end)
        return dpr_err_set(err, -EBADMSG, "%s: %zu unexpected bytes after the last record", path,
                           end - pos);
    return 0;
short_file:
    return dpr_err_set(err, -EBADMSG, "%s: record %llu runs past the end of the data", path,
                       (unsigned long long)i);
oom:
    return dpr_err_set(err, r, "%s: out of memory while loading", path);
}

/* Walks a change log's records twice: first every op and bound is checked,
 * then (d not NULL) they are applied, so a damaged record never leaves d
 * half changed. */
static int apply_records(const uint8_t *p, size_t size, size_t hlen, const kv_ckpt_meta *m,
                         kv_dict *d, const char *path, dpr_err *err)
{
    size_t pos = hlen, end = size - KV_CKPT_TRAILER, newlen;
    uint64_t i;
    int r = 0;

    if (m->count > (end - pos) / KV_CKPT_REC_HEADER)
        return dpr_err_set(err, -EBADMSG, "%s: record count %llu does not fit the file", path,
                           (unsigned long long)m->count);
    for (i = 0; i < m->count; i++) {
        if (end - pos < KV_CKPT_REC_HEADER)
            goto short_file;
        uint8_t op = p[pos];
        size_t klen = dpr_get_u32(p + pos + 1), vlen = dpr_get_u32(p + pos + 5);
        pos += KV_CKPT_REC_HEADER;
        if (end - pos < klen || end - pos - klen < vlen)
            goto short_file;
        if ((op != KV_CKPT_OP_SET && op != KV_CKPT_OP_DEL && op != KV_CKPT_OP_APPEND) ||
            (op == KV_CKPT_OP_DEL && vlen != 0))
            return dpr_err_set(err, -EBADMSG, "%s: record %llu has a bad operation (%u, value "
                               "of %zu bytes)", path, (unsigned long long)i, (unsigned)op, vlen);
        pos += klen + vlen;
    }
    if (pos != end)
        return dpr_err_set(err, -EBADMSG, "%s: %zu unexpected bytes after the last record", path,
                           end - pos);
    for (pos = hlen; d && pos < end;) {
        uint8_t op = p[pos];
        size_t klen = dpr_get_u32(p + pos + 1), vlen = dpr_get_u32(p + pos + 5);
        const char *key = (const char *)p + pos + KV_CKPT_REC_HEADER, *val = key + klen;
        if (op == KV_CKPT_OP_SET)
            r = kv_dict_set(d, key, klen, val, vlen, NULL);
        else if (op == KV_CKPT_OP_DEL)
            r = kv_dict_delete(d, key, klen) < 0 ? -ENOMEM : 0;
        else
            r = kv_dict_append(d, key, klen, val, vlen, &newlen);
        if (r < 0)
            return dpr_err_set(err, r, "%s: cannot apply a record: %s", path, strerror(-r));
        pos += KV_CKPT_REC_HEADER + klen + vlen;
    }
    return 0;
short_file:
    return dpr_err_set(err, -EBADMSG, "%s: record %llu runs past the end of the data", path,
                       (unsigned long long)i);
}

enum load_mode { LOAD_FULL, LOAD_ANY, LOAD_VERIFY };

static int load(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                enum load_mode mode, dpr_err *err)
{
    struct stat st;
    uint8_t *p = MAP_FAILED;
    size_t size = 0, hlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0) {
        r = -errno;
        return dpr_err_set(err, r, "cannot open %s: %s", path, strerror(-r));
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        dpr_err_set(err, r, "cannot stat %s: %s", path, strerror(-r));
        goto out;
    }
    size = (size_t)st.st_size;
    if (size < KV_CKPT_HEADER_V1 + KV_CKPT_TRAILER) {
        r = dpr_err_set(err, -EBADMSG, "%s is truncated (%zu bytes)", path, size);
        goto out;
    }
    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        r = -errno;
        dpr_err_set(err, r, "cannot map %s: %s", path, strerror(-r));
        goto out;
    }
    (void)madvise(p, size, MADV_SEQUENTIAL);
    r = decode_header(p, size - KV_CKPT_TRAILER, m, &hlen, path, err);
    if (r < 0)
        goto out;
    if (memcmp(p + size - KV_CKPT_TRAILER, KV_CKPT_END, 8) != 0) {
        r = dpr_err_set(err, -EBADMSG, "%s is truncated or damaged (no end marker)", path);
        goto out;
    }
    uint32_t want = dpr_get_u32(p + size - 4);
    uint32_t got = (uint32_t)crc_update(crc32(0L, Z_NULL, 0), p, size - 4);
    if (want != got) {
        r = dpr_err_set(err, -EBADMSG, "%s is damaged: CRC-32 %08x, expected %08x", path,
                        (unsigned)got, (unsigned)want);
        goto out;
    }
    if (m->worker != worker) {
        r = dpr_err_set(err, -EBADMSG, "%s belongs to worker %llu, not %llu", path,
                        (unsigned long long)m->worker, (unsigned long long)worker);
        goto out;
    }
    if (m->version != version) {
        r = dpr_err_set(err, -EBADMSG, "%s holds version %llu, not %llu", path,
                        (unsigned long long)m->version, (unsigned long long)version);
        goto out;
    }
    if (m->delta && mode == LOAD_FULL) {
        r = dpr_err_set(err, -EBADMSG, "%s is a change log on version %llu, not a full image",
                        path, (unsigned long long)m->base);
        goto out;
    }
    if (!m->delta && d && kv_dict_size(d) != 0) {
        r = dpr_err_set(err, -EINVAL, "%s is a full image: it loads into an empty keyspace",
                        path);
        goto out;
    }
    if (m->delta)
        r = apply_records(p, size, hlen, m, mode == LOAD_VERIFY ? NULL : d, path, err);
    else
        r = load_records(p, size, hlen, m, mode == LOAD_VERIFY ? NULL : d, path, err);
out:
    if (p != MAP_FAILED)
        munmap(p, size);
    close(fd);
    return r;
}

int kv_ckpt_load(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                 dpr_err *err)
{
    return load(path, worker, version, d, m, LOAD_FULL, err);
}

int kv_ckpt_apply(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                  dpr_err *err)
{
    return load(path, worker, version, d, m, LOAD_ANY, err);
}

int kv_ckpt_verify(const char *path, uint64_t worker, uint64_t version, kv_ckpt_meta *m,
                   dpr_err *err)
{
    return load(path, worker, version, NULL, m, LOAD_VERIFY, err);
}

/* --- the directory ------------------------------------------------------ */

/* "ckpt-<digits><suffix>" -> version; 0 if not. */
static uint64_t parse_suffixed(const char *name, const char *suffix)
{
    uint64_t v = 0;
    const char *p;

    if (strncmp(name, "ckpt-", 5) != 0)
        return 0;
    p = name + 5;
    if (*p < '1' || *p > '9')
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return strcmp(p, suffix) == 0 ? v : 0;
}

/* "ckpt-<digits>.kv" (tmp: "ckpt-<digits>.kv.tmp") -> version; 0 if not. */
static uint64_t parse_name(const char *name, int tmp)
{
    return parse_suffixed(name, tmp ? ".kv.tmp" : ".kv");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int kv_ckpt_list(const char *dir, uint64_t **out, size_t *nout)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    int r = 0;

    *out = NULL;
    *nout = 0;
    if (!dp)
        return -errno;
    while ((errno = 0, de = readdir(dp))) {
        uint64_t ver = parse_name(de->d_name, 0);
        if (!ver)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                r = -ENOMEM;
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        v[n++] = ver;
    }
    if (errno)
        r = -errno;
out:
    closedir(dp);
    if (r < 0) {
        free(v);
        return r;
    }
    if (n)
        qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    *nout = n;
    return 0;
}

int kv_ckpt_remove_tmp(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    int r = 0;

    if (!dp)
        return -errno;
    while ((de = readdir(dp))) {
        if (!parse_name(de->d_name, 1) &&
            !parse_suffixed(de->d_name, KV_CKPT_COMPACT_SUFFIX) &&
            !parse_suffixed(de->d_name, KV_CKPT_COMPACT_SUFFIX ".tmp"))
            continue;
        if (unlinkat(dirfd(dp), de->d_name, 0) < 0 && errno != ENOENT)
            r = -errno;
    }
    closedir(dp);
    return r;
}

int kv_ckpt_remove(const char *dir, uint64_t version)
{
    char path[PATH_MAX];
    int r = kv_ckpt_path(path, sizeof(path), dir, version, 0);
    if (r < 0)
        return r;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* Copies src to dst (created or truncated) and fsyncs it; dst is removed
 * on failure. buf: WBUF_SIZE bytes. */
static int copy_file(const char *src, const char *dst, char *buf, dpr_err *err)
{
    const char *step = "open", *what = src;
    int in = -1, out = -1, r = 0;
    bool created = false;
    ssize_t n;

    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        r = -errno;
        goto fail;
    }
    what = dst;
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        r = -errno;
        goto fail;
    }
    created = true;
    for (;;) {
        n = read(in, buf, WBUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            step = "read";
            what = src;
            goto fail;
        }
        if (n == 0)
            break;
        r = dpr_write_all(out, buf, (size_t)n);
        if (r < 0) {
            step = "write";
            goto fail;
        }
    }
    step = "fsync";
    if (fsync(out) < 0) {
        r = -errno;
        goto fail;
    }
    step = "close";
    r = close(out);
    out = -1;
    if (r < 0) {
        r = -errno;
        goto fail;
    }
    close(in);
    return 0;
fail:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (created)
        unlink(dst);
    return dpr_err_set(err, r, "cannot %s %s: %s", step, what, strerror(-r));
}

/*
 * All or nothing as far as it can be: every file is copied (and fsynced)
 * under its temporary name first, and only then are they renamed, newest
 * first. Should a rename fail half-way, what is left lacks old versions,
 * never the newest: start-up then fails for want of the checkpoint the
 * finder asks for rather than restoring an older one without a word.
 */
int kv_ckpt_seed(const char *dir, const char *seed, size_t *copied, dpr_err *err)
{
    char src[PATH_MAX], tmp[PATH_MAX], dst[PATH_MAX];
    uint64_t *v = NULL;
    size_t n = 0, ntmp = 0;
    char *buf = NULL;
    int r;

    *copied = 0;
    r = kv_ckpt_list(seed, &v, &n);
    if (r < 0)
        return dpr_err_set(err, r, "cannot read seed directory %s: %s", seed, strerror(-r));
    if (n == 0)
        return 0;
    buf = malloc(WBUF_SIZE);
    if (!buf) {
        r = dpr_err_set(err, -ENOMEM, "out of memory copying checkpoints from %s", seed);
        goto out;
    }
    for (; ntmp < n; ntmp++) {
        r = kv_ckpt_path(src, sizeof(src), seed, v[ntmp], 0);
        if (r == 0)
            r = kv_ckpt_path(tmp, sizeof(tmp), dir, v[ntmp], 1);
        if (r < 0) {
            dpr_err_set(err, r, "path too long copying checkpoint %llu from %s",
                        (unsigned long long)v[ntmp], seed);
            goto out;
        }
        r = copy_file(src, tmp, buf, err);
        if (r < 0)
            goto out;
    }
    for (size_t i = n; i-- > 0;) {
        r = kv_ckpt_path(tmp, sizeof(tmp), dir, v[i], 1);
        if (r == 0)
            r = kv_ckpt_path(dst, sizeof(dst), dir, v[i], 0);
        if (r == 0 && rename(tmp, dst) < 0)
            r = -errno;
        if (r < 0) {
            dpr_err_set(err, r, "cannot rename %s: %s", tmp, strerror(-r));
            ntmp = i + 1; /* the ones below i are still temporary */
            goto out;
        }
        (*copied)++;
    }
    ntmp = 0;
    r = dpr_fsync_dir(dir);
    if (r < 0)
        dpr_err_set(err, r, "fsync of directory %s failed: %s", dir, strerror(-r));
out:
    for (size_t i = 0; i < ntmp; i++)
        if (kv_ckpt_path(tmp, sizeof(tmp), dir, v[i], 1) == 0)
            unlink(tmp);
    free(buf);
    free(v);
    return r;
}
