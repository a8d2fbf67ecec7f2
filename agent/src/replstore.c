/* replstore.c - see replstore.h. */
#include "replstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/fs.h"

static gid_t share_gid = (gid_t)-1;

void agent_replstore_set_group(gid_t gid)
{
    share_gid = gid;
}

/* What is made in the tree gets the group of agent_replstore_set_group
 * (a directory 0750, a file 0640: its mode when created). */
static int share(const char *path, int fd)
{
    struct stat st;

    if (share_gid == (gid_t)-1)
        return 0;
    if ((fd >= 0 ? fstat(fd, &st) : stat(path, &st)) < 0)
        return -errno;
    if (st.st_gid == share_gid)
        return 0;
    return (fd >= 0 ? fchown(fd, (uid_t)-1, share_gid) : chown(path, (uid_t)-1, share_gid)) < 0
               ? -errno : 0;
}

int agent_replstore_path(char *out, size_t cap, const char *root, const char *deployment,
                         uint64_t worker, uint64_t version, bool part)
{
    int n;

    if (version)
        n = snprintf(out, cap, "%s/%s/%" PRIu64 "/ckpt-%" PRIu64 ".kv%s", root, deployment,
                     worker, version, part ? ".part" : "");
    else
        n = snprintf(out, cap, "%s/%s/%" PRIu64, root, deployment, worker);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* CRC-32 of the whole file fd, and its size. */
static int file_crc(int fd, uint64_t *size, uint32_t *crc)
{
    static const size_t chunk = 1 << 20;
    unsigned char *buf = malloc(chunk);
    uint32_t c = dpr_crc32(NULL, 0);
    uint64_t n = 0;
    ssize_t r;

    if (!buf)
        return -ENOMEM;
    while ((r = pread(fd, buf, chunk, (off_t)n)) > 0) {
        c = dpr_crc32_update(c, buf, (size_t)r);
        n += (uint64_t)r;
    }
    free(buf);
    if (r < 0)
        return -errno;
    *size = n;
    *crc = c;
    return 0;
}

/* Is the finished copy at path what want says? */
static int same_copy(const char *path, const agent_replstore_sum *want, bool *same)
{
    uint64_t size = 0;
    uint32_t crc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    *same = false;
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno; /* (pruned meanwhile: none) */
    rc = file_crc(fd, &size, &crc);
    close(fd);
    if (rc == 0)
        *same = size == want->size && crc == want->crc;
    return rc;
}

int agent_replstore_have(const char *root, const char *deployment, uint64_t worker,
                         uint64_t version, const agent_replstore_sum *want, uint64_t *size,
                         bool *complete)
{
    char path[4096];
    struct stat st;
    int rc;

    *size = 0;
    *complete = false;
    rc = agent_replstore_path(path, sizeof(path), root, deployment, worker, version, false);
    if (rc < 0)
        return rc;
    if (stat(path, &st) == 0) {
        if (!want) {
            *complete = true;
            *size = (uint64_t)st.st_size;
            return 0;
        }
        /* (the size first: the CRC only of a copy that may be the same) */
        if ((uint64_t)st.st_size == want->size) {
            rc = same_copy(path, want, complete);
            if (rc < 0 || *complete) {
                *size = *complete ? want->size : 0;
                return rc;
            }
        }
    } else if (errno != ENOENT) {
        return -errno;
    }
    rc = agent_replstore_path(path, sizeof(path), root, deployment, worker, version, true);
    if (rc < 0)
        return rc;
    if (stat(path, &st) == 0)
        *size = (uint64_t)st.st_size;
    else if (errno != ENOENT)
        return -errno;
    return 0;
}

int agent_replstore_put(const char *root, const char *deployment, uint64_t worker,
                        uint64_t version, uint64_t offset, const void *data, size_t len,
                        uint64_t *size)
{
    char path[4096], dir[4096], parent[4096];
    struct stat st;
    int fd = -1, rc;

    *size = 0;
    rc = agent_replstore_path(dir, sizeof(dir), root, deployment, worker, 0, false);
    if (rc == 0)
        rc = agent_replstore_path(path, sizeof(path), root, deployment, worker, version, true);
    if (rc == 0 && offset == 0)
        rc = dpr_mkdir_p(dir, 0750, NULL);
    if (rc == 0 && offset == 0)
        rc = share(dir, -1);
    if (rc == 0 && offset == 0 && dpr_dirname(dir, parent, sizeof(parent)) == 0)
        rc = share(parent, -1); /* (the deployment's) */
    if (rc < 0)
        return rc;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0640);
    if (fd < 0)
        return -errno;
    rc = share(NULL, fd);
    if (rc < 0)
        goto out;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    *size = (uint64_t)st.st_size;
    if ((uint64_t)st.st_size != offset) {
        rc = -ESPIPE; /* not where the sender thinks: it asks again */
        goto out;
    }
    if (lseek(fd, (off_t)offset, SEEK_SET) < 0) {
        rc = -errno;
        goto out;
    }
    rc = dpr_write_all(fd, data, len);
    if (rc == 0)
        *size = offset + len;
    else if (ftruncate(fd, (off_t)offset) < 0) /* (a short write leaves nothing behind) */
        rc = -errno;
out:
    close(fd);
    return rc;
}

static void drop_abandoned(const char *root, const char *deployment, uint64_t worker,
                           uint64_t version);

int agent_replstore_finish(const char *root, const char *deployment, uint64_t worker,
                           uint64_t version, uint64_t size, uint32_t crc)
{
    char part[4096], path[4096], dir[4096];
    uint64_t have = 0;
    uint32_t got = 0;
    int fd, rc;

    rc = agent_replstore_path(part, sizeof(part), root, deployment, worker, version, true);
    if (rc == 0)
        rc = agent_replstore_path(path, sizeof(path), root, deployment, worker, version, false);
    if (rc == 0)
        rc = agent_replstore_path(dir, sizeof(dir), root, deployment, worker, 0, false);
    if (rc < 0)
        return rc;
    fd = open(part, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return access(path, F_OK) == 0 ? 0 : -errno; /* (finished already: said twice) */
    rc = file_crc(fd, &have, &got);
    if (rc == 0 && (have != size || got != crc))
        rc = -EBADMSG;
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (rc == -EBADMSG)
        unlink(part);
    if (rc == 0 && rename(part, path) < 0)
        rc = -errno;
    if (rc == 0)
        drop_abandoned(root, deployment, worker, version);
    if (rc == 0)
        rc = dpr_fsync_dir(dir);
    return rc;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

/* Is name "ckpt-<v>.kv" (part: with ".part")? *v its version. */
static bool copy_name(const char *name, bool part, uint64_t *v)
{
    const char *suffix = part ? ".kv.part" : ".kv";
    char *end;

    if (strncmp(name, "ckpt-", 5) != 0 || name[5] < '1' || name[5] > '9')
        return false;
    errno = 0;
    *v = strtoull(name + 5, &end, 10);
    return errno == 0 && strcmp(end, suffix) == 0;
}

/* The versions of the files of dir (finished copies, or part files). */
static int list_dir(const char *dir, bool part, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t *v = NULL, ver;
    size_t cap = 0;

    *out = NULL;
    *n = 0;
    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        if (!copy_name(e->d_name, part, &ver))
            continue;
        if (*n == cap) {
            uint64_t *g = realloc(v, (cap ? cap * 2 : 16) * sizeof(*g));
            if (!g) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = g;
            cap = cap ? cap * 2 : 16;
        }
        v[(*n)++] = ver;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), cmp_u64);
    *out = v;
    return 0;
}

int agent_replstore_list(const char *root, const char *deployment, uint64_t worker,
                         uint64_t **v, size_t *n)
{
    char dir[4096];
    int rc = agent_replstore_path(dir, sizeof(dir), root, deployment, worker, 0, false);

    *v = NULL;
    *n = 0;
    return rc < 0 ? rc : list_dir(dir, false, v, n);
}

size_t agent_replstore_prunable(const uint64_t *v, size_t n, uint64_t cut)
{
    return agent_replstore_prunable_chain(v, NULL, n, cut);
}

size_t agent_replstore_prunable_chain(const uint64_t *v, const bool *starts, size_t n,
                                      uint64_t cut)
{
    size_t keep = 0; /* the index of the newest <= cut */
    bool found = false;

    for (size_t i = 0; i < n && v[i] <= cut; i++) {
        keep = i;
        found = true;
    }
    if (!found)
        return 0;
    while (starts && keep > 0 && !starts[keep])
        keep--; /* (its chain needs the copies back to its start) */
    return keep;
}

/* Is the copy at path a dpr-kv change log on a version (*base)? Only such
 * a log (cachestore/src/kv_ckpt.h: magic "DPRKVCKP", format 3, flag 1,
 * base at offset 64, little-endian) does not start a chain; anything else
 * is kept or pruned on its own, as before change logs. */
static bool change_log(const char *path, uint64_t *base)
{
    unsigned char h[72];
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *base = 0;
    if (fd < 0)
        return false;
    r = pread(fd, h, sizeof(h), 0);
    close(fd);
    if (r != (ssize_t)sizeof(h) || memcmp(h, "DPRKVCKP", 8) != 0 || h[8] != 3 || h[9] ||
        h[10] || h[11] || !(h[12] & 1))
        return false;
    for (int i = 7; i >= 0; i--)
        *base = *base << 8 | h[64 + i];
    return *base != 0;
}

static bool starts_chain(const char *path)
{
    uint64_t base;

    return !change_log(path, &base);
}

/* The copy of version just finished is a change log on base: the worker
 * made no checkpoint between base and version on its world-line, so copies
 * (and parts) in between are of a line it rolled back from (versions
 * above the cut it restored). They go: a restore from these copies (a
 * seed, DPR_KV_SEED_DIR) checks every chain and would refuse them. */
static void drop_abandoned(const char *root, const char *deployment, uint64_t worker,
                           uint64_t version)
{
    char path[4096];
    uint64_t base, *v = NULL;
    size_t n = 0;

    if (agent_replstore_path(path, sizeof(path), root, deployment, worker, version, false) < 0 ||
        !change_log(path, &base) || base + 1 >= version)
        return;
    for (int part = 0; part < 2; part++) {
        if (agent_replstore_path(path, sizeof(path), root, deployment, worker, 0, false) < 0 ||
            list_dir(path, part, &v, &n) < 0)
            continue;
        for (size_t i = 0; i < n; i++)
            if (v[i] > base && v[i] < version &&
                agent_replstore_path(path, sizeof(path), root, deployment, worker, v[i],
                                     part) == 0)
                unlink(path);
        free(v);
        v = NULL;
    }
}

int agent_replstore_prune(const char *root, const char *deployment, uint64_t worker,
                          uint64_t cut)
{
    char path[4096];
    uint64_t *v = NULL, *parts = NULL;
    size_t n = 0, nparts = 0, drop;
    bool *starts;
    int rc, removed = 0;

    rc = agent_replstore_list(root, deployment, worker, &v, &n);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc;
    starts = calloc(n ? n : 1, sizeof(*starts));
    if (!starts) {
        free(v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        starts[i] = agent_replstore_path(path, sizeof(path), root, deployment, worker, v[i],
                                         false) < 0 || starts_chain(path);
    drop = agent_replstore_prunable_chain(v, starts, n, cut);
    free(starts);
    for (size_t i = 0; i < drop; i++)
        if (agent_replstore_path(path, sizeof(path), root, deployment, worker, v[i], false) ==
                0 && unlink(path) == 0)
            removed++;
    /* part files at or below the cut will never be finished, except the
     * replacement of a copy that stays (a compacted image sent again) */
    rc = agent_replstore_path(path, sizeof(path), root, deployment, worker, 0, false);
    if (rc == 0 && list_dir(path, true, &parts, &nparts) == 0) {
        for (size_t i = 0; i < nparts && parts[i] <= cut; i++) {
            bool kept = false;
            for (size_t k = drop; k < n && !kept; k++)
                kept = v[k] == parts[i];
            if (!kept && agent_replstore_path(path, sizeof(path), root, deployment, worker,
                                              parts[i], true) == 0 && unlink(path) == 0)
                removed++;
        }
        free(parts);
    }
    free(v);
    return removed;
}

int agent_replstore_drop(const char *root, const char *deployment, uint64_t worker)
{
    char dir[4096], path[4096];
    DIR *d;
    struct dirent *e;
    int rc = agent_replstore_path(dir, sizeof(dir), root, deployment, worker, 0, false);

    if (rc < 0)
        return rc;
    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && dpr_path_join(path, sizeof(path), dir, e->d_name) == 0)
            unlink(path);
    closedir(d);
    if (rmdir(dir) < 0 && errno != ENOENT)
        return -errno;
    /* the deployment's directory goes too once it is empty */
    if (dpr_dirname(dir, path, sizeof(path)) == 0)
        rmdir(path);
    return 0;
}
