/*
 * store_file.c - the finder's durable state in one local file (see store.h
 * and docs/finder-store.md).
 *
 * File `finder.state`, little-endian:
 *
 *   magic "DPRFIND\0" (8), format 1 (1 byte),
 *   world-line (8, >= 1), generation (8),
 *   nworkers (8), then per worker: id, cut, durable (8 each), ids strictly
 *     rising, cut <= durable,
 *   nprefixes (8, <= DPR_FINDER_MAX_PREFIXES), then per prefix: ended
 *     world-line (8, rising, below world-line), n (8), n x (worker, version)
 *     (8 each, workers strictly rising, versions >= 1),
 *   CRC-32 (zlib, 4 bytes) of everything before it.
 *
 * save() writes `finder.state.tmp`, fsyncs it, renames it over
 * `finder.state` and fsyncs the directory, so at any instant the directory
 * holds either the old or the new complete file. A leftover temporary file
 * (crash before the rename) is removed when the store is opened.
 */
#include "dpr/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/buf.h"

#define STATE_NAME "finder.state"
#define TMP_NAME "finder.state.tmp"
#define LOCK_NAME "finder.lock"

#define MAGIC "DPRFIND\0"
#define MAGIC_LEN 8
#define FORMAT 1
#define HEADER_LEN (MAGIC_LEN + 1 + 3 * 8) /* up to and with nworkers */
#define WORKER_LEN (3 * 8)
#define PREFIX_HEADER_LEN (2 * 8)
#define DEP_LEN (2 * 8)
#define CRC_LEN 4
#define MIN_FILE_LEN (HEADER_LEN + 8 + CRC_LEN)
/* Far above any real cluster (65,536 workers take 1.5 MiB). */
#define MAX_FILE_LEN ((size_t)1 << 30)

typedef struct file_store {
    dpr_store base;
    char *dir;
    char *state_path;
    char *tmp_path;
    int dir_fd;
    int lock_fd;
    dpr_buf out; /* reused serialisation buffer */
    char err[512];
} file_store;

static void set_err(file_store *fs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(file_store *fs, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(fs->err, sizeof(fs->err), fmt, ap);
    va_end(ap);
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t crc_of(const unsigned char *p, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    while (len > 0) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)crc;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Checks the content rules shared by load and save; NULL if fine, else a
 * description (written to msg). */
static const char *check_state(const dpr_finder_state *st, char *msg, size_t msglen)
{
    if (st->world_line == 0) {
        snprintf(msg, msglen, "world-line is 0");
        return msg;
    }
    for (size_t i = 0; i < st->nworkers; i++) {
        const dpr_finder_worker_state *w = &st->workers[i];
        if (w->cut > w->durable) {
            snprintf(msg, msglen,
                     "worker %llu has cut %llu above its durable version %llu",
                     (unsigned long long)w->worker, (unsigned long long)w->cut,
                     (unsigned long long)w->durable);
            return msg;
        }
        if (i > 0 && st->workers[i - 1].worker >= w->worker) {
            snprintf(msg, msglen, "worker ids not strictly increasing (%llu after %llu)",
                     (unsigned long long)w->worker,
                     (unsigned long long)st->workers[i - 1].worker);
            return msg;
        }
    }
    if (st->nprefixes > DPR_FINDER_MAX_PREFIXES) {
        snprintf(msg, msglen, "%zu world-line prefixes (at most %d)", st->nprefixes,
                 DPR_FINDER_MAX_PREFIXES);
        return msg;
    }
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        if (p->world_line == 0 || p->world_line >= st->world_line ||
            (i > 0 && p->world_line <= st->prefixes[i - 1].world_line)) {
            snprintf(msg, msglen, "ended world-line %llu out of order (current %llu)",
                     (unsigned long long)p->world_line, (unsigned long long)st->world_line);
            return msg;
        }
        for (size_t j = 0; j < p->n; j++) {
            if (p->cut[j].version == 0 || (j > 0 && p->cut[j].worker <= p->cut[j - 1].worker)) {
                snprintf(msg, msglen,
                         "prefix of world-line %llu: entries not sorted by worker or "
                         "version 0 (worker %llu)",
                         (unsigned long long)p->world_line,
                         (unsigned long long)p->cut[j].worker);
                return msg;
            }
        }
    }
    return NULL;
}

/* Reads the whole file at fd into a fresh buffer. */
static int read_all(int fd, unsigned char **out, size_t *outlen, size_t limit)
{
    struct stat sb;
    unsigned char *data = NULL;
    size_t len, got = 0;
    int rc;

    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto fail;
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > limit) {
        rc = -EFBIG;
        goto fail;
    }
    len = (size_t)sb.st_size;
    data = malloc(len ? len : 1);
    if (!data) {
        rc = -ENOMEM;
        goto fail;
    }
    while (got < len) {
        ssize_t n = read(fd, data + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break; /* shrank meanwhile: the length check will complain */
        got += (size_t)n;
    }
    *out = data;
    *outlen = got;
    return 0;
fail:
    free(data);
    return rc;
}

/* A bounds-checked reader over the image (without its CRC). */
typedef struct cursor {
    const unsigned char *p;
    size_t left;
} cursor;

static int take_le64(cursor *c, uint64_t *v)
{
    if (c->left < 8)
        return -1;
    *v = get_le64(c->p);
    c->p += 8;
    c->left -= 8;
    return 0;
}

/* Walks the structure without allocating: 0 if the counts fit the length
 * exactly, else -1 (truncated, extended or a damaged count). */
static int check_layout(const unsigned char *p, size_t body)
{
    cursor c = { p + HEADER_LEN - 8, body - (HEADER_LEN - 8) };
    uint64_t n, np, k, wl;

    if (take_le64(&c, &n) < 0 || n > c.left / WORKER_LEN)
        return -1;
    c.p += n * WORKER_LEN;
    c.left -= n * WORKER_LEN;
    if (take_le64(&c, &np) < 0 || np > DPR_FINDER_MAX_PREFIXES)
        return -1;
    for (uint64_t i = 0; i < np; i++) {
        if (take_le64(&c, &wl) < 0 || take_le64(&c, &k) < 0 || k > c.left / DEP_LEN)
            return -1;
        c.p += k * DEP_LEN;
        c.left -= k * DEP_LEN;
    }
    return c.left == 0 ? 0 : -1;
}

/* Parses and validates a state file image. */
static int parse_state(file_store *fs, const unsigned char *p, size_t len,
                       dpr_finder_state *out)
{
    dpr_finder_state st;
    cursor c;
    char why[256];
    uint64_t n = 0, np = 0;
    size_t body;
    int rc = -EBADMSG;

    memset(&st, 0, sizeof(st));
    if (len >= MAGIC_LEN && memcmp(p, MAGIC, MAGIC_LEN) != 0) {
        set_err(fs, "%s: not a dpr-finder state file (bad magic)", fs->state_path);
        goto fail;
    }
    if (len < MIN_FILE_LEN) {
        set_err(fs, "%s: corrupt state file: truncated (%zu bytes, a valid file has at least %d)",
                fs->state_path, len, MIN_FILE_LEN);
        goto fail;
    }
    if (p[MAGIC_LEN] != FORMAT) {
        set_err(fs, "%s: unsupported state file format %u (this finder reads format %d)",
                fs->state_path, p[MAGIC_LEN], FORMAT);
        goto fail;
    }
    body = len - CRC_LEN;
    if (check_layout(p, body) < 0) {
        set_err(fs, "%s: corrupt state file: length %zu does not match its content "
                "(truncated or damaged)", fs->state_path, len);
        goto fail;
    }
    if (crc_of(p, body) != get_le32(p + body)) {
        set_err(fs, "%s: corrupt state file: checksum mismatch", fs->state_path);
        goto fail;
    }
    /* the layout is known to fit from here on */
    c.p = p + MAGIC_LEN + 1;
    c.left = body - MAGIC_LEN - 1;
    take_le64(&c, &st.world_line);
    take_le64(&c, &st.generation);
    take_le64(&c, &n);
    if (n > 0 && !(st.workers = calloc((size_t)n, sizeof(*st.workers))))
        goto nomem;
    st.nworkers = (size_t)n;
    for (size_t i = 0; i < st.nworkers; i++) {
        take_le64(&c, &st.workers[i].worker);
        take_le64(&c, &st.workers[i].cut);
        take_le64(&c, &st.workers[i].durable);
    }
    take_le64(&c, &np);
    if (np > 0 && !(st.prefixes = calloc((size_t)np, sizeof(*st.prefixes))))
        goto nomem;
    for (size_t i = 0; i < np; i++) {
        dpr_finder_prefix *pf = &st.prefixes[i];
        uint64_t k = 0;
        st.nprefixes = i + 1; /* so that a failure frees what is there */
        take_le64(&c, &pf->world_line);
        take_le64(&c, &k);
        if (k > 0 && !(pf->cut = calloc((size_t)k, sizeof(*pf->cut))))
            goto nomem;
        pf->n = (size_t)k;
        for (size_t j = 0; j < pf->n; j++) {
            take_le64(&c, &pf->cut[j].worker);
            take_le64(&c, &pf->cut[j].version);
        }
    }
    if (check_state(&st, why, sizeof(why))) {
        set_err(fs, "%s: corrupt state file: %s", fs->state_path, why);
        goto fail;
    }
    *out = st;
    return 0;
nomem:
    rc = -ENOMEM;
    set_err(fs, "%s: out of memory loading the state", fs->state_path);
fail:
    dpr_finder_state_free(&st);
    return rc;
}

static int fs_load(dpr_store *s, dpr_finder_state *out)
{
    file_store *fs = (file_store *)s;
    unsigned char *data = NULL;
    size_t len = 0;
    int fd = -1, rc;

    fd = openat(fs->dir_fd, STATE_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT)
            set_err(fs, "%s: no state yet", fs->state_path);
        else
            set_err(fs, "%s: cannot open: %s", fs->state_path, strerror(-rc));
        goto out;
    }
    rc = read_all(fd, &data, &len, MAX_FILE_LEN);
    if (rc == -EFBIG) {
        set_err(fs, "%s: corrupt state file: larger than %zu bytes", fs->state_path,
                MAX_FILE_LEN);
        rc = -EBADMSG;
        goto out;
    }
    if (rc < 0) {
        set_err(fs, "%s: cannot read: %s", fs->state_path, strerror(-rc));
        goto out;
    }
    rc = parse_state(fs, data, len, out);
out:
    free(data);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int serialise(file_store *fs, const dpr_finder_state *st)
{
    dpr_buf *b = &fs->out;
    unsigned char crc[CRC_LEN];
    size_t need;
    uint32_t c;
    int rc;

    b->len = 0;
    if (st->nworkers > (MAX_FILE_LEN - MIN_FILE_LEN) / WORKER_LEN)
        return -EFBIG;
    need = MIN_FILE_LEN + st->nworkers * WORKER_LEN;
    for (size_t i = 0; i < st->nprefixes; i++) {
        if (st->prefixes[i].n > (MAX_FILE_LEN - need) / DEP_LEN)
            return -EFBIG;
        need += PREFIX_HEADER_LEN + st->prefixes[i].n * DEP_LEN;
        if (need > MAX_FILE_LEN)
            return -EFBIG;
    }
    rc = dpr_buf_reserve(b, need);
    if (rc < 0)
        return rc;
    /* Cannot fail after the reservation. */
    dpr_buf_append(b, MAGIC, MAGIC_LEN);
    dpr_buf_append(b, &(unsigned char){ FORMAT }, 1);
    dpr_buf_append_le64(b, st->world_line);
    dpr_buf_append_le64(b, st->generation);
    dpr_buf_append_le64(b, (uint64_t)st->nworkers);
    for (size_t i = 0; i < st->nworkers; i++) {
        dpr_buf_append_le64(b, st->workers[i].worker);
        dpr_buf_append_le64(b, st->workers[i].cut);
        dpr_buf_append_le64(b, st->workers[i].durable);
    }
    dpr_buf_append_le64(b, (uint64_t)st->nprefixes);
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        dpr_buf_append_le64(b, p->world_line);
        dpr_buf_append_le64(b, (uint64_t)p->n);
        for (size_t j = 0; j < p->n; j++) {
            dpr_buf_append_le64(b, p->cut[j].worker);
            dpr_buf_append_le64(b, p->cut[j].version);
        }
    }
    c = crc_of((const unsigned char *)b->data, b->len);
    for (int i = 0; i < CRC_LEN; i++)
        crc[i] = (unsigned char)(c >> (8 * i));
    dpr_buf_append(b, crc, CRC_LEN);
    return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fs_save(dpr_store *s, const dpr_finder_state *st)
{
    file_store *fs = (file_store *)s;
    char why[256];
    const char *what = NULL;
    int fd = -1, rc;

    if (check_state(st, why, sizeof(why))) {
        set_err(fs, "%s: refusing to save an inconsistent state: %s", fs->state_path, why);
        return -EINVAL;
    }
    rc = serialise(fs, st);
    if (rc < 0) {
        set_err(fs, "%s: cannot build the state image: %s", fs->state_path, strerror(-rc));
        return rc;
    }
    fd = openat(fs->dir_fd, TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        what = "create";
        goto fail;
    }
    rc = write_all(fd, fs->out.data, fs->out.len);
    if (rc < 0) {
        what = "write";
        goto fail;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        what = "fsync";
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        rc = -errno;
        what = "close";
        goto fail;
    }
    if (renameat(fs->dir_fd, TMP_NAME, fs->dir_fd, STATE_NAME) < 0) {
        rc = -errno;
        what = "rename";
        goto fail;
    }
    if (fsync(fs->dir_fd) < 0) {
        rc = -errno;
        set_err(fs, "%s: fsync of the directory failed: %s", fs->dir, strerror(-rc));
        return rc;
    }
    return 0;
fail:
    set_err(fs, "%s: %s failed: %s", fs->tmp_path, what, strerror(-rc));
    if (fd >= 0)
        close(fd);
    unlinkat(fs->dir_fd, TMP_NAME, 0);
    return rc;
}

static const char *fs_error(dpr_store *s)
{
    file_store *fs = (file_store *)s;

    return fs->err[0] ? fs->err : NULL;
}

static void fs_close(dpr_store *s)
{
    file_store *fs = (file_store *)s;

    if (fs->lock_fd >= 0)
        close(fs->lock_fd); /* releases the flock */
    if (fs->dir_fd >= 0)
        close(fs->dir_fd);
    dpr_buf_free(&fs->out);
    free(fs->dir);
    free(fs->state_path);
    free(fs->tmp_path);
    free(fs);
}

static const dpr_store_ops file_ops = {
    .load = fs_load,
    .save = fs_save,
    .close = fs_close,
    .error = fs_error,
};

/* mkdir -p: creates dir and missing parents (0700), fsyncing each parent
 * so the new entries are durable. */
static int make_dirs(const char *dir)
{
    char *copy = strdup(dir);
    char *slash;
    int rc = 0;

    if (!copy)
        return -ENOMEM;
    for (slash = copy + 1;; slash++) {
        char saved = *slash;
        if (saved != '/' && saved != '\0')
            continue;
        *slash = '\0';
        if (mkdir(copy, 0700) == 0) {
            /* fsync the parent so the new directory entry survives a crash */
            char *parent = strdup(copy);
            char *cut;
            int pfd;
            if (!parent) {
                rc = -ENOMEM;
                break;
            }
            cut = strrchr(parent, '/');
            if (cut == parent)
                cut[1] = '\0';
            else if (cut)
                *cut = '\0';
            pfd = open(cut ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                if (fsync(pfd) < 0)
                    rc = -errno;
                close(pfd);
            }
            free(parent);
            if (rc < 0)
                break;
        } else if (errno != EEXIST) {
            rc = -errno;
            break;
        }
        *slash = saved;
        if (saved == '\0')
            break;
    }
    free(copy);
    return rc;
}

static char open_err[512];

int dpr_store_file_open(const char *dir, dpr_store **out, const char **err)
{
    file_store *fs = NULL;
    int rc;

    open_err[0] = '\0';
    if (!dir || !*dir) {
        snprintf(open_err, sizeof(open_err), "state directory: empty path");
        rc = -EINVAL;
        goto fail;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs) {
        rc = -ENOMEM;
        snprintf(open_err, sizeof(open_err), "%s: out of memory", dir);
        goto fail;
    }
    fs->base.ops = &file_ops;
    fs->dir_fd = -1;
    fs->lock_fd = -1;
    dpr_buf_init(&fs->out);
    fs->dir = strdup(dir);
    fs->state_path = path_join(dir, STATE_NAME);
    fs->tmp_path = path_join(dir, TMP_NAME);
    if (!fs->dir || !fs->state_path || !fs->tmp_path) {
        rc = -ENOMEM;
        snprintf(open_err, sizeof(open_err), "%s: out of memory", dir);
        goto fail;
    }
    rc = make_dirs(dir);
    if (rc < 0) {
        snprintf(open_err, sizeof(open_err), "%s: cannot create the state directory: %s",
                 dir, strerror(-rc));
        goto fail;
    }
    fs->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->dir_fd < 0) {
        rc = -errno;
        snprintf(open_err, sizeof(open_err), "%s: cannot open the state directory: %s",
                 dir, strerror(-rc));
        goto fail;
    }
    fs->lock_fd = openat(fs->dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->lock_fd < 0) {
        rc = -errno;
        snprintf(open_err, sizeof(open_err), "%s/%s: cannot create the lock file: %s",
                 dir, LOCK_NAME, strerror(-rc));
        goto fail;
    }
    if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        if (rc == -EWOULDBLOCK) {
            rc = -EBUSY;
            snprintf(open_err, sizeof(open_err),
                     "%s: state directory in use by another dpr-finder (%s/%s is locked)",
                     dir, dir, LOCK_NAME);
        } else {
            snprintf(open_err, sizeof(open_err), "%s/%s: cannot lock: %s", dir, LOCK_NAME,
                     strerror(-rc));
        }
        goto fail;
    }
    /* A temporary file is left only by a crash before its rename: the
     * state it held was never durable, so nobody was told about it. */
    if (unlinkat(fs->dir_fd, TMP_NAME, 0) < 0 && errno != ENOENT) {
        rc = -errno;
        snprintf(open_err, sizeof(open_err), "%s: cannot remove a leftover temporary file: %s",
                 fs->tmp_path, strerror(-rc));
        goto fail;
    }
    *out = &fs->base;
    if (err)
        *err = NULL;
    return 0;
fail:
    if (fs)
        fs_close(&fs->base);
    if (err)
        *err = open_err;
    return rc;
}
