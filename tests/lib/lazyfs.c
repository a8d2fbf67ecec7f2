/*
 * lazyfs - a FUSE file system that forgets what was not fsynced: the
 * power-loss tests' disk (in the spirit of Jepsen's LazyFS).
 *
 *     build/tests/lazyfs [-v] [-d] BACKING MOUNTPOINT   (root, /dev/fuse; stays in
 *                                                       the foreground)
 *     echo drop > MOUNTPOINT/.lazyfs                    the power cut
 *     cat MOUNTPOINT/.lazyfs                            state and counters
 *     umount MOUNTPOINT                                 lazyfs exits
 *
 * Files and directories under MOUNTPOINT behave as on a local file system
 * whose page cache is never written back on its own: reads see every
 * write at once, but the backing directory BACKING only ever holds what
 * was made durable, by these rules (a conservative reading of POSIX, like
 * ext4 without auto_da_alloc and with a lazy journal):
 *
 *  - write, truncate, chmod change a file's *current* data and mode only.
 *  - create, mkdir, unlink, rmdir, rename change the *current* entries of
 *    the directories involved only (a rename between two directories: both).
 *  - fsync or fdatasync of a file (and every write on an O_SYNC/O_DSYNC
 *    descriptor) makes that file's current data, size and mode durable. It
 *    does not make any name of it durable.
 *  - fsync of a directory makes that directory's current entries durable:
 *    names created, removed or renamed in it since its last fsync. It makes
 *    no file's data durable.
 *  - After a cut, the file system is what the durable entries reach from
 *    the root, each file with its durable data. So:
 *      * data written but not fsynced is gone (a file never fsynced comes
 *        back empty, if its name was durable at all);
 *      * a file created and fsynced whose directory was not fsynced since
 *        is gone; so is a new directory, with everything in it, until its
 *        parent is fsynced;
 *      * a rename is durable only once its directory is fsynced: until then
 *        the old name holds the old file; an unlink likewise;
 *      * between two directories, each side is durable with its own
 *        directory's fsync (real file systems journal a rename as one
 *        change; this model is stricter: the file may be gone, or under
 *        both names as two copies).
 *  - Owners and times are not modelled; sync(2) and syncfs(2) make nothing
 *    durable (FUSE is not told of them).
 *
 * Power cut: writing "drop" to MOUNTPOINT/.lazyfs (hidden from readdir;
 * the write returns once done) discards every unsynced change and turns
 * the machine off: every later operation fails with EIO (except on the
 * control file, statfs and stat of the root, so that umount works), until
 * the mount is unmounted and lazyfs exits. A test then mounts BACKING
 * again with a new lazyfs: it finds exactly the durable state. Unsynced
 * changes live only in this process's memory, so however lazyfs ends
 * (drop, umount, SIGTERM, SIGKILL) they are lost; BACKING holds the
 * durable state between any two operations. Reading the control file
 * gives `state alive|dropped` and counters (fsyncs, unsynced and, after a
 * drop, dropped files, directories and bytes).
 *
 * Why the low-level libfuse API: the model is per inode (a file's unsynced
 * data, a directory's unsynced entries, a file still open after its unlink),
 * and the low-level API deals in inode numbers and lookup counts, so a file
 * keeps its identity across renames and unlinks. The high-level API is
 * path-based: it maps paths back to inodes itself and, unless told
 * otherwise, renames unlinked open files to .fuse_hiddenN, a directory
 * change the model would have to hide. The session loop is single-threaded:
 * operations run one at a time, so the drop is atomic with respect to every
 * fsync (one answered before the drop is in BACKING; one after it fails).
 *
 * Limits (a test tool): regular files and directories only (symlinks, hard
 * links, device nodes, FIFOs and sockets get EPERM); a directory cannot move
 * to another parent (EXDEV, as across file systems: mv copies instead); no
 * extended attributes; everything is held in memory, so it suits small
 * state directories; BACKING is written without fsync (the host's own power
 * is not what is tested). Locks (flock, fcntl) are the kernel's, local to
 * the mount.
 */
#define FUSE_USE_VERSION 35

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "common/fs.h"
#include "common/log.h"

#define CTL_NAME ".lazyfs"
#define CTL_INO 2
#define FIRST_INO 3
#define CACHE_TIMEOUT 1.0 /* seconds the kernel may cache names and attributes */
#define STATUS_MAX 1024

typedef struct lz_bytes {
    char *p;
    size_t len, cap;
} lz_bytes;

typedef struct lz_dirent {
    char *name;
    uint64_t ino;
} lz_dirent;

typedef struct lz_entries {
    lz_dirent *v;
    size_t n, cap;
} lz_entries;

typedef struct lz_inode {
    uint64_t ino;
    bool dir;
    mode_t mode, dmode; /* permission bits: current, durable */
    uid_t uid;
    gid_t gid;
    struct timespec atime, mtime, ctime;
    lz_bytes data, ddata;   /* files: current and durable content */
    lz_entries ents, dents; /* directories: current and durable entries */
    uint64_t parent;        /* directories: the current parent (for "..") */
    uint64_t dparent;       /* directories: the directory durably naming it, 0 if none */
    char *dname;            /* ... and the name there */
    bool dirty;             /* the current state differs from the durable one */
    size_t nlink, dlink;    /* current and durable entries naming it */
    uint64_t nlookup;       /* the kernel's references */
    size_t nopen;           /* open files and directories */
} lz_inode;

typedef struct lz_dirsnap { /* a directory's entries when it was opened */
    size_t n;
    uint64_t self, parent;
    lz_dirent v[];
} lz_dirsnap;

static struct {
    char backing[PATH_MAX];
    lz_inode **inodes; /* by inode number; never reused */
    uint64_t next_ino, cap;
    bool dead;
    uint64_t fsyncs, dirsyncs; /* fsyncs that made something durable */
    size_t dropped_files, dropped_dirs, dropped_bytes;
} g;

/* ---- small containers ------------------------------------------------------ */

static int bytes_reserve(lz_bytes *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Sets the length to n; new bytes are zero. */
static int bytes_resize(lz_bytes *b, size_t n)
{
    int r = bytes_reserve(b, n);

    if (r < 0)
        return r;
    if (n > b->len)
        memset(b->p + b->len, 0, n - b->len);
    b->len = n;
    return 0;
}

static int bytes_copy(lz_bytes *dst, const lz_bytes *src)
{
    int r = bytes_reserve(dst, src->len);

    if (r < 0)
        return r;
    if (src->len)
        memcpy(dst->p, src->p, src->len);
    dst->len = src->len;
    return 0;
}

static void bytes_free(lz_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static ssize_t ents_find(const lz_entries *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static int ents_add(lz_entries *e, const char *name, uint64_t ino)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        lz_dirent *v = realloc(e->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        e->v = v;
        e->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    e->v[e->n].name = copy;
    e->v[e->n].ino = ino;
    e->n++;
    return 0;
}

static void ents_del(lz_entries *e, size_t i)
{
    assert(i < e->n);
    free(e->v[i].name);
    e->v[i] = e->v[--e->n];
}

static void ents_free(lz_entries *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].name);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* ---- inodes ---------------------------------------------------------------- */

static lz_inode *get(uint64_t ino)
{
    return ino < g.next_ino ? g.inodes[ino] : NULL;
}

static struct timespec now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_REALTIME, &t);
    return t;
}

static lz_inode *new_inode(bool dir, mode_t mode, uid_t uid, gid_t gid)
{
    lz_inode *in;

    if (g.next_ino >= g.cap) {
        uint64_t cap = g.cap ? g.cap * 2 : 1024;
        lz_inode **v = realloc(g.inodes, cap * sizeof(*v));
        if (!v)
            return NULL;
        memset(v + g.cap, 0, (cap - g.cap) * sizeof(*v));
        g.inodes = v;
        g.cap = cap;
    }
    in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->ino = g.next_ino++;
    in->dir = dir;
    in->mode = in->dmode = mode & 07777;
    in->uid = uid;
    in->gid = gid;
    in->atime = in->mtime = in->ctime = now();
    g.inodes[in->ino] = in;
    return in;
}

static void maybe_free(lz_inode *in)
{
    if (!in || in->ino == FUSE_ROOT_ID || in->nlink || in->dlink || in->nlookup || in->nopen)
        return;
    /* unreachable now and for good: nothing can name it again */
    assert(in->ents.n == 0); /* rmdir and rename only remove empty directories */
    for (size_t i = 0; i < in->dents.n; i++) {
        lz_inode *child = get(in->dents.v[i].ino);
        assert(child && child->dlink > 0);
        child->dlink--;
        if (child->dir && child->dparent == in->ino) {
            child->dparent = 0;
            free(child->dname);
            child->dname = NULL;
        }
        maybe_free(child);
    }
    g.inodes[in->ino] = NULL;
    bytes_free(&in->data);
    bytes_free(&in->ddata);
    ents_free(&in->ents);
    ents_free(&in->dents);
    free(in->dname);
    free(in);
}

static void fill_attr(const lz_inode *in, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = in->ino;
    st->st_mode = (in->dir ? S_IFDIR : S_IFREG) | in->mode;
    st->st_nlink = in->dir ? 2 : in->nlink;
    st->st_uid = in->uid;
    st->st_gid = in->gid;
    st->st_size = in->dir ? 4096 : (off_t)in->data.len;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
    st->st_atim = in->atime;
    st->st_mtim = in->mtime;
    st->st_ctim = in->ctime;
}

static void ctl_attr(struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = CTL_INO;
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_blksize = 4096;
}

/* ---- the backing directory (the durable state) --------------------------- */

/* The backing path of directory d, or -ENOENT if no chain of durable
 * entries reaches it from the root. */
static int backing_path(const lz_inode *d, char *out, size_t cap)
{
    int r;

    assert(d->dir);
    if (d->ino == FUSE_ROOT_ID)
        return snprintf(out, cap, "%s", g.backing) < (int)cap ? 0 : -ENAMETOOLONG;
    if (!d->dparent)
        return -ENOENT;
    r = backing_path(get(d->dparent), out, cap);
    if (r < 0)
        return r;
    size_t n = strlen(out);
    return snprintf(out + n, cap - n, "/%s", d->dname) < (int)(cap - n) ? 0 : -ENAMETOOLONG;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) < 0 ? -1 : 0;
}

static int remove_tree(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return -errno;
    return 0;
}

static int write_backing_file(const char *path, const lz_bytes *b, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), r;

    if (fd < 0)
        return -errno;
    r = dpr_write_all(fd, b->p, b->len);
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

/* Writes the durable state of in (a whole subtree for a directory) at path. */
static int put_tree(const lz_inode *in, const char *path)
{
    char sub[PATH_MAX];
    int r = remove_tree(path);

    if (r < 0)
        return r;
    if (!in->dir)
        return write_backing_file(path, &in->ddata, in->dmode);
    if (mkdir(path, in->dmode) < 0)
        return -errno;
    for (size_t i = 0; i < in->dents.n; i++) {
        if (dpr_path_join(sub, sizeof(sub), path, in->dents.v[i].name) < 0)
            return -ENAMETOOLONG;
        r = put_tree(get(in->dents.v[i].ino), sub);
        if (r < 0)
            return r;
    }
    return 0;
}

static int backing_failed(const char *what, const char *path, int r)
{
    log_error("cannot %s %s in the backing directory: %s", what, path, strerror(-r));
    return -EIO;
}

/* fsync of a file: its current data and mode become durable, and so they
 * are written wherever a durable name of it is reachable. */
static int sync_file(lz_inode *in)
{
    char path[PATH_MAX];
    int r;

    if (!in->dirty)
        return 0;
    r = bytes_copy(&in->ddata, &in->data);
    if (r < 0)
        return r;
    in->dmode = in->mode;
    in->dirty = false;
    g.fsyncs++;
    for (uint64_t i = FUSE_ROOT_ID; i < g.next_ino; i++) {
        lz_inode *d = g.inodes[i];
        if (!d || !d->dir)
            continue;
        for (size_t k = 0; k < d->dents.n; k++) {
            if (d->dents.v[k].ino != in->ino || backing_path(d, path, sizeof(path)) < 0)
                continue;
            size_t n = strlen(path);
            if (snprintf(path + n, sizeof(path) - n, "/%s", d->dents.v[k].name) >=
                (int)(sizeof(path) - n))
                return backing_failed("write", path, -ENAMETOOLONG);
            r = write_backing_file(path, &in->ddata, in->dmode);
            if (r < 0)
                return backing_failed("write", path, r);
        }
    }
    return 0;
}

/* fsync of a directory: its current entries become durable. */
static int sync_dir(lz_inode *d)
{
    char path[PATH_MAX], sub[PATH_MAX];
    bool reach;
    int r;

    if (!d->dirty)
        return 0;
    reach = backing_path(d, path, sizeof(path)) == 0;
    g.dirsyncs++;
    /* names gone, or naming another inode now */
    for (size_t i = d->dents.n; i-- > 0;) {
        lz_dirent *de = &d->dents.v[i];
        ssize_t j = ents_find(&d->ents, de->name);
        if (j >= 0 && d->ents.v[j].ino == de->ino)
            continue;
        lz_inode *child = get(de->ino);
        assert(child && child->dlink > 0);
        if (reach) {
            if (dpr_path_join(sub, sizeof(sub), path, de->name) < 0)
                return backing_failed("remove", de->name, -ENAMETOOLONG);
            r = remove_tree(sub);
            if (r < 0)
                return backing_failed("remove", sub, r);
        }
        child->dlink--;
        if (child->dir && child->dparent == d->ino) {
            child->dparent = 0;
            free(child->dname);
            child->dname = NULL;
        }
        ents_del(&d->dents, i);
        maybe_free(child);
    }
    /* new names */
    for (size_t i = 0; i < d->ents.n; i++) {
        lz_dirent *de = &d->ents.v[i];
        if (ents_find(&d->dents, de->name) >= 0)
            continue; /* the same inode: the loop above removed any other */
        lz_inode *child = get(de->ino);
        assert(child);
        r = ents_add(&d->dents, de->name, de->ino);
        if (r < 0)
            return r;
        child->dlink++;
        if (child->dir) {
            assert(child->dparent == 0); /* directories never change parents */
            child->dparent = d->ino;
            child->dname = strdup(de->name);
            if (!child->dname)
                return -ENOMEM;
        }
        if (reach) {
            if (dpr_path_join(sub, sizeof(sub), path, de->name) < 0)
                return backing_failed("write", de->name, -ENAMETOOLONG);
            r = put_tree(child, sub);
            if (r < 0)
                return backing_failed("write", sub, r);
        }
    }
    d->dmode = d->mode;
    if (reach && chmod(path, d->dmode) < 0)
        return backing_failed("chmod", path, -errno);
    d->dirty = false;
    return 0;
}

/* Reads the backing directory at path into directory d: current and
 * durable state alike. */
static int load_dir(lz_inode *d, const char *path)
{
    char sub[PATH_MAX];
    DIR *dp = opendir(path);
    struct dirent *de;
    struct stat st;
    int r = 0;

    if (!dp) {
        r = -errno;
        log_error("cannot open %s: %s", path, strerror(-r));
        return r;
    }
    while (r == 0 && (errno = 0, de = readdir(dp))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (d->ino == FUSE_ROOT_ID && strcmp(de->d_name, CTL_NAME) == 0) {
            log_warning("%s/%s: ignored (the name of the control file)", path, de->d_name);
            continue;
        }
        if (dpr_path_join(sub, sizeof(sub), path, de->d_name) < 0) {
            r = -ENAMETOOLONG;
            log_error("path too long: %s/%s", path, de->d_name);
            break;
        }
        if (lstat(sub, &st) < 0) {
            r = -errno;
            log_error("cannot stat %s: %s", sub, strerror(-r));
            break;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
            log_warning("%s: ignored (neither a file nor a directory)", sub);
            continue;
        }
        lz_inode *in = new_inode(S_ISDIR(st.st_mode), st.st_mode, st.st_uid, st.st_gid);
        if (!in || ents_add(&d->ents, de->d_name, in->ino) < 0 ||
            ents_add(&d->dents, de->d_name, in->ino) < 0) {
            r = -ENOMEM;
            break;
        }
        in->nlink = in->dlink = 1;
        in->atime = st.st_atim;
        in->mtime = st.st_mtim;
        in->ctime = st.st_ctim;
        if (in->dir) {
            in->parent = in->dparent = d->ino;
            in->dname = strdup(de->d_name);
            r = in->dname ? load_dir(in, sub) : -ENOMEM;
        } else {
            int fd = open(sub, O_RDONLY | O_CLOEXEC);
            char *text;
            size_t len;
            r = fd < 0 ? -errno : dpr_read_fd(fd, SIZE_MAX / 2, &text, &len);
            if (fd >= 0)
                close(fd);
            if (r < 0) {
                log_error("cannot read %s: %s", sub, strerror(-r));
                break;
            }
            in->data.p = text;
            in->data.len = len;
            in->data.cap = len + 1;
            r = bytes_copy(&in->ddata, &in->data);
        }
    }
    if (r == 0 && errno)
        r = -errno;
    closedir(dp);
    return r;
}

/* ---- the control file ------------------------------------------------------ */

static void count_unsynced(size_t *files, size_t *dirs, size_t *bytes)
{
    *files = *dirs = *bytes = 0;
    for (uint64_t i = FUSE_ROOT_ID; i < g.next_ino; i++) {
        const lz_inode *in = g.inodes[i];
        if (!in || !in->dirty)
            continue;
        if (in->dir) {
            (*dirs)++;
        } else {
            (*files)++;
            *bytes += in->data.len;
        }
    }
}

static size_t status_text(char *buf, size_t cap)
{
    size_t files, dirs, bytes;
    int n;

    count_unsynced(&files, &dirs, &bytes);
    n = snprintf(buf, cap,
                 "state %s\nfsyncs %llu\ndirsyncs %llu\nunsynced_files %zu\n"
                 "unsynced_dirs %zu\nunsynced_bytes %zu\ndropped_files %zu\n"
                 "dropped_dirs %zu\ndropped_bytes %zu\n",
                 g.dead ? "dropped" : "alive", (unsigned long long)g.fsyncs,
                 (unsigned long long)g.dirsyncs, g.dead ? 0 : files, g.dead ? 0 : dirs,
                 g.dead ? 0 : bytes, g.dropped_files, g.dropped_dirs, g.dropped_bytes);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static int ctl_command(const char *buf, size_t size)
{
    while (size > 0 && (buf[size - 1] == '\n' || buf[size - 1] == ' '))
        size--;
    if (size == 4 && memcmp(buf, "drop", 4) == 0) {
        if (!g.dead) {
            count_unsynced(&g.dropped_files, &g.dropped_dirs, &g.dropped_bytes);
            g.dead = true;
            log_info("power cut: dropped %zu unsynced files (%zu bytes) and %zu unsynced "
                     "directories; every operation fails from now on",
                     g.dropped_files, g.dropped_bytes, g.dropped_dirs);
        }
        return 0;
    }
    log_warning("control: unknown command '%.*s' (known: drop)", (int)(size > 64 ? 64 : size), buf);
    return -EINVAL;
}

/* ---- operations -------------------------------------------------------------- */

static void reply_entry(fuse_req_t req, lz_inode *in)
{
    struct fuse_entry_param e;

    memset(&e, 0, sizeof(e));
    e.ino = in->ino;
    e.generation = 1;
    e.attr_timeout = e.entry_timeout = CACHE_TIMEOUT;
    fill_attr(in, &e.attr);
    in->nlookup++;
    if (fuse_reply_entry(req, &e) < 0) {
        in->nlookup--;
        maybe_free(in);
    }
}

/* The live directory ino, or NULL with *err set. */
static lz_inode *dir_of(fuse_ino_t ino, int *err)
{
    lz_inode *d = get(ino);

    *err = g.dead ? EIO : !d ? ENOENT : !d->dir ? ENOTDIR : 0;
    return *err ? NULL : d;
}

static int check_new_name(fuse_ino_t parent, const char *name)
{
    if (strlen(name) > NAME_MAX)
        return ENAMETOOLONG;
    if (parent == FUSE_ROOT_ID && strcmp(name, CTL_NAME) == 0)
        return EPERM;
    return 0;
}

static void touch_dir(lz_inode *d)
{
    d->mtime = d->ctime = now();
    d->dirty = true;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    /* every write must reach us before write(2) returns */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    lz_inode *d;
    ssize_t i;
    int err;

    if (parent == FUSE_ROOT_ID && strcmp(name, CTL_NAME) == 0) {
        memset(&e, 0, sizeof(e));
        e.ino = CTL_INO;
        e.generation = 1;
        ctl_attr(&e.attr);
        fuse_reply_entry(req, &e);
        return;
    }
    d = dir_of(parent, &err);
    if (!d) {
        fuse_reply_err(req, err);
        return;
    }
    i = ents_find(&d->ents, name);
    if (i < 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    reply_entry(req, get(d->ents.v[i].ino));
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    lz_inode *in = ino >= FIRST_INO ? get(ino) : NULL;

    if (in) {
        in->nlookup -= nlookup < in->nlookup ? nlookup : in->nlookup;
        maybe_free(in);
    }
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    lz_inode *in = get(ino);

    if (ino == CTL_INO) {
        ctl_attr(&st);
    } else if (!in || (g.dead && ino != FUSE_ROOT_ID)) {
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
        return;
    } else {
        fill_attr(in, &st);
    }
    fuse_reply_attr(req, &st, CACHE_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct stat st;
    lz_inode *in = get(ino);
    int r;

    if (ino == CTL_INO) { /* `echo drop >` truncates it first */
        ctl_attr(&st);
        fuse_reply_attr(req, &st, 0);
        return;
    }
    if (g.dead || !in) {
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
        return;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (in->dir) {
            fuse_reply_err(req, EISDIR);
            return;
        }
        if (attr->st_size < 0) {
            fuse_reply_err(req, EINVAL);
            return;
        }
        if ((size_t)attr->st_size != in->data.len) {
            r = bytes_resize(&in->data, (size_t)attr->st_size);
            if (r < 0) {
                fuse_reply_err(req, -r);
                return;
            }
            in->dirty = true;
            in->mtime = now();
        }
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        in->mode = attr->st_mode & 07777;
        in->dirty = true;
    }
    if (to_set & FUSE_SET_ATTR_UID)
        in->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        in->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME)
        in->atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        in->atime = now();
    if (to_set & FUSE_SET_ATTR_MTIME)
        in->mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        in->mtime = now();
    in->ctime = now();
    fill_attr(in, &st);
    fuse_reply_attr(req, &st, CACHE_TIMEOUT);
}

/* A new file or directory named name in d (a live directory). */
static lz_inode *make(fuse_req_t req, lz_inode *d, const char *name, bool dir, mode_t mode,
                      int *err)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    lz_inode *in;

    *err = check_new_name(d->ino, name);
    if (*err)
        return NULL;
    if (ents_find(&d->ents, name) >= 0) {
        *err = EEXIST;
        return NULL;
    }
    in = new_inode(dir, mode, ctx->uid, ctx->gid);
    if (!in || ents_add(&d->ents, name, in->ino) < 0) {
        if (in)
            maybe_free(in);
        *err = ENOMEM;
        return NULL;
    }
    in->nlink = 1;
    if (dir)
        in->parent = d->ino;
    touch_dir(d);
    return in;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    lz_inode *d, *in;
    int err;

    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EPERM); /* only files and directories */
        return;
    }
    d = dir_of(parent, &err);
    in = d ? make(req, d, name, false, mode, &err) : NULL;
    if (!in)
        fuse_reply_err(req, err);
    else
        reply_entry(req, in);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    lz_inode *d, *in;
    int err;

    d = dir_of(parent, &err);
    in = d ? make(req, d, name, true, mode, &err) : NULL;
    if (!in)
        fuse_reply_err(req, err);
    else
        reply_entry(req, in);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
    lz_inode *d, *in;
    ssize_t i;
    int err;

    d = dir_of(parent, &err);
    if (!d) {
        fuse_reply_err(req, err);
        return;
    }
    i = ents_find(&d->ents, name);
    if (i < 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    in = get(d->ents.v[i].ino);
    if (in->dir != dir) {
        fuse_reply_err(req, dir ? ENOTDIR : EISDIR);
        return;
    }
    if (dir && in->ents.n > 0) {
        fuse_reply_err(req, ENOTEMPTY);
        return;
    }
    ents_del(&d->ents, (size_t)i);
    in->nlink--;
    in->ctime = now();
    touch_dir(d);
    maybe_free(in);
    fuse_reply_err(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, true);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    lz_inode *src_dir, *dst_dir, *in, *old = NULL;
    ssize_t i, j;
    int err;

    src_dir = dir_of(parent, &err);
    dst_dir = src_dir ? dir_of(newparent, &err) : NULL;
    if (!dst_dir) {
        fuse_reply_err(req, err);
        return;
    }
    if (flags & ~(unsigned)RENAME_NOREPLACE) {
        fuse_reply_err(req, EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT */
        return;
    }
    err = check_new_name(newparent, newname);
    i = ents_find(&src_dir->ents, name);
    if (!err && i < 0)
        err = ENOENT;
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    in = get(src_dir->ents.v[i].ino);
    if (in->dir && src_dir != dst_dir) {
        fuse_reply_err(req, EXDEV); /* directories never change parents (see the top) */
        return;
    }
    j = ents_find(&dst_dir->ents, newname);
    if (j >= 0) {
        old = get(dst_dir->ents.v[j].ino);
        if (old == in) {
            fuse_reply_err(req, 0); /* POSIX: nothing happens */
            return;
        }
        err = (flags & RENAME_NOREPLACE) ? EEXIST
              : old->dir && !in->dir     ? EISDIR
              : !old->dir && in->dir     ? ENOTDIR
              : old->dir && old->ents.n  ? ENOTEMPTY
                                         : 0;
        if (err) {
            fuse_reply_err(req, err);
            return;
        }
    }
    if (old) {
        dst_dir->ents.v[j].ino = in->ino; /* entries keep their places */
        old->nlink--;
    } else if (ents_add(&dst_dir->ents, newname, in->ino) < 0) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* i still names in: the entry added last or replaced in place is another name */
    assert(strcmp(src_dir->ents.v[i].name, name) == 0 && src_dir->ents.v[i].ino == in->ino);
    ents_del(&src_dir->ents, (size_t)i);
    in->ctime = now();
    touch_dir(src_dir);
    touch_dir(dst_dir);
    maybe_free(old);
    fuse_reply_err(req, 0);
}

static int open_file(lz_inode *in, struct fuse_file_info *fi)
{
    if (in->dir)
        return EISDIR;
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY && in->data.len > 0) {
        in->data.len = 0;
        in->dirty = true;
        in->mtime = in->ctime = now();
    }
    fi->fh = (uint64_t)fi->flags;
    in->nopen++;
    return 0;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct fuse_entry_param e;
    lz_inode *d, *in;
    ssize_t i;
    int err;

    if (parent == FUSE_ROOT_ID && strcmp(name, CTL_NAME) == 0) { /* O_CREAT on the control */
        if (fi->flags & O_EXCL) {
            fuse_reply_err(req, EEXIST);
            return;
        }
        memset(&e, 0, sizeof(e));
        e.ino = CTL_INO;
        e.generation = 1;
        ctl_attr(&e.attr);
        fi->direct_io = 1;
        fuse_reply_create(req, &e, fi);
        return;
    }
    d = dir_of(parent, &err);
    if (!d) {
        fuse_reply_err(req, err);
        return;
    }
    i = ents_find(&d->ents, name);
    if (i >= 0 && (fi->flags & O_EXCL)) {
        fuse_reply_err(req, EEXIST);
        return;
    }
    in = i >= 0 ? get(d->ents.v[i].ino) : make(req, d, name, false, mode, &err);
    if (in)
        err = open_file(in, fi);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = in->ino;
    e.generation = 1;
    e.attr_timeout = e.entry_timeout = CACHE_TIMEOUT;
    fill_attr(in, &e.attr);
    in->nlookup++;
    if (fuse_reply_create(req, &e, fi) < 0) {
        in->nlookup--;
        in->nopen--;
        maybe_free(in);
    }
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lz_inode *in = get(ino);
    int err;

    if (ino == CTL_INO) {
        fi->direct_io = 1; /* every read and write reaches us */
        fuse_reply_open(req, fi);
        return;
    }
    if (g.dead || !in) {
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
        return;
    }
    err = open_file(in, fi);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    if (fuse_reply_open(req, fi) < 0) {
        in->nopen--;
        maybe_free(in);
    }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    lz_inode *in = get(ino);
    char text[STATUS_MAX];

    if (ino == CTL_INO) {
        size_t n = status_text(text, sizeof(text));
        size_t o = off < 0 ? n : (size_t)off > n ? n : (size_t)off;
        fuse_reply_buf(req, text + o, size < n - o ? size : n - o);
        return;
    }
    if (g.dead || !in) {
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
        return;
    }
    if (off < 0 || (size_t)off >= in->data.len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t left = in->data.len - (size_t)off;
    fuse_reply_buf(req, in->data.p + off, size < left ? size : left);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    lz_inode *in = get(ino);
    int r;

    if (ino == CTL_INO) {
        r = ctl_command(buf, size);
        if (r < 0)
            fuse_reply_err(req, -r);
        else
            fuse_reply_write(req, size);
        return;
    }
    if (g.dead || !in) {
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
        return;
    }
    if (fi->fh & O_APPEND)
        off = (off_t)in->data.len;
    if (off < 0 || (size_t)off > SIZE_MAX / 2 - size) {
        fuse_reply_err(req, EFBIG);
        return;
    }
    size_t end = (size_t)off + size;
    if (end > in->data.len && (r = bytes_resize(&in->data, end)) < 0) {
        fuse_reply_err(req, -r);
        return;
    }
    memcpy(in->data.p + off, buf, size);
    in->dirty = true;
    in->mtime = in->ctime = now();
    if ((fi->fh & O_DSYNC) && (r = sync_file(in)) < 0) { /* O_SYNC includes O_DSYNC */
        fuse_reply_err(req, -r);
        return;
    }
    fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0); /* close(2) makes nothing durable */
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lz_inode *in = ino >= FIRST_INO ? get(ino) : NULL;

    if (in && in->nopen > 0) {
        in->nopen--;
        maybe_free(in);
    }
    fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    lz_inode *in = get(ino);

    if (ino == CTL_INO)
        fuse_reply_err(req, 0);
    else if (g.dead || !in)
        fuse_reply_err(req, g.dead ? EIO : ENOENT);
    else
        fuse_reply_err(req, -sync_file(in));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lz_inode *d;
    lz_dirsnap *s;
    int err;

    d = dir_of(ino, &err);
    if (!d) {
        fuse_reply_err(req, err);
        return;
    }
    s = malloc(sizeof(*s) + d->ents.n * sizeof(s->v[0]));
    if (!s) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    s->n = 0;
    s->self = d->ino;
    s->parent = d->ino == FUSE_ROOT_ID ? d->ino : d->parent;
    for (size_t i = 0; i < d->ents.n; i++) {
        s->v[i].name = strdup(d->ents.v[i].name);
        s->v[i].ino = d->ents.v[i].ino;
        if (!s->v[i].name) {
            for (size_t k = 0; k < i; k++)
                free(s->v[k].name);
            free(s);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        s->n++;
    }
    fi->fh = (uint64_t)(uintptr_t)s;
    d->nopen++;
    if (fuse_reply_open(req, fi) < 0) {
        for (size_t k = 0; k < s->n; k++)
            free(s->v[k].name);
        free(s);
        d->nopen--;
        maybe_free(d);
    }
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    const lz_dirsnap *s = (const lz_dirsnap *)(uintptr_t)fi->fh;
    char *buf;
    size_t used = 0;
    struct stat st;

    if (g.dead) {
        fuse_reply_err(req, EIO);
        return;
    }
    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    memset(&st, 0, sizeof(st));
    for (size_t k = off < 0 ? 0 : (size_t)off; k < s->n + 2; k++) {
        const char *name = k == 0 ? "." : k == 1 ? ".." : s->v[k - 2].name;
        const lz_inode *in = k < 2 ? NULL : get(s->v[k - 2].ino);
        st.st_ino = k == 0 ? s->self : k == 1 ? s->parent : s->v[k - 2].ino;
        st.st_mode = k < 2 || (in && in->dir) ? S_IFDIR : S_IFREG;
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)k + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    lz_dirsnap *s = (lz_dirsnap *)(uintptr_t)fi->fh;
    lz_inode *d = get(ino);

    for (size_t k = 0; k < s->n; k++)
        free(s->v[k].name);
    free(s);
    if (d && d->nopen > 0) {
        d->nopen--;
        maybe_free(d);
    }
    fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    lz_inode *d;
    int err;

    d = dir_of(ino, &err);
    if (!d)
        fuse_reply_err(req, err);
    else
        fuse_reply_err(req, -sync_dir(d));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv;

    if (statvfs(g.backing, &sv) < 0)
        fuse_reply_err(req, errno);
    else
        fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .create = op_create,
};

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *to)
{
    fprintf(to, "usage: lazyfs [-v] [-d] BACKING MOUNTPOINT\n"
                "  mounts BACKING on MOUNTPOINT; only what is fsynced reaches BACKING;\n"
                "  'echo drop > MOUNTPOINT/" CTL_NAME "' cuts the power (see lazyfs.c)\n"
                "  -v  debug log   -d  libfuse's request trace\n");
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se = NULL;
    bool verbose = false, trace = false;
    struct stat st;
    lz_inode *root;
    size_t files, dirs, bytes;
    int opt, rc = 1;

    while ((opt = getopt(argc, argv, "vdh")) != -1) {
        if (opt == 'v') {
            verbose = true;
        } else if (opt == 'd') {
            trace = true;
        } else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    dpr_log_open("lazyfs", verbose);
    umask(0); /* modes are the file system's, exactly */
    if (!realpath(argv[optind], g.backing) || stat(g.backing, &st) < 0) {
        log_error("%s: %s", argv[optind], strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("%s: not a directory", argv[optind]);
        return 1;
    }
    g.next_ino = FUSE_ROOT_ID; /* 0 is never an inode; CTL_INO is skipped below */
    root = new_inode(true, st.st_mode, st.st_uid, st.st_gid);
    if (!root || root->ino != FUSE_ROOT_ID)
        return 1;
    g.next_ino = FIRST_INO;
    root->parent = FUSE_ROOT_ID;
    if (load_dir(root, g.backing) < 0)
        return 1;
    if (fuse_opt_add_arg(&args, argv[0]) < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
        fuse_opt_add_arg(&args, "fsname=lazyfs,subtype=lazyfs,default_permissions") < 0 ||
        (trace && fuse_opt_add_arg(&args, "-d") < 0))
        goto out;
    se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
    if (!se)
        goto out;
    if (fuse_set_signal_handlers(se) < 0)
        goto out;
    if (fuse_session_mount(se, argv[optind + 1]) < 0) {
        log_error("cannot mount on %s", argv[optind + 1]);
        fuse_remove_signal_handlers(se);
        goto out;
    }
    log_info("mounted %s on %s (%llu inodes)", g.backing, argv[optind + 1],
             (unsigned long long)(g.next_ino - FIRST_INO + 1));
    rc = fuse_session_loop(se) == 0 ? 0 : 1;
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    count_unsynced(&files, &dirs, &bytes);
    if (g.dead)
        log_info("unmounted %s after a power cut", argv[optind + 1]);
    else
        log_info("unmounted %s: %zu unsynced files and %zu unsynced directories discarded",
                 argv[optind + 1], files, dirs);
out:
    if (se)
        fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    return rc;
}
