/* fs.c - see common/fs.h. */
#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int dpr_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int dpr_read_fd(int fd, size_t limit, char **out, size_t *len)
{
    size_t cap = 4096, got = 0;
    char *data = NULL, *p;
    int r;

    for (;;) {
        if (got + 1 >= cap || !data) {
            if (data)
                cap *= 2;
            p = realloc(data, cap);
            if (!p) {
                r = -ENOMEM;
                goto fail;
            }
            data = p;
        }
        ssize_t n = read(fd, data + got, cap - got - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > limit) {
            r = -EFBIG;
            goto fail;
        }
    }
    data[got] = '\0';
    *out = data;
    *len = got;
    return 0;
fail:
    free(data);
    return r;
}

int dpr_dirname(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash)
        return snprintf(out, cap, ".") < (int)cap ? 0 : -ENAMETOOLONG;
    n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap)
        return -ENAMETOOLONG;
    memcpy(out, path, n);
    out[n] = '\0';
    return 0;
}

int dpr_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

int dpr_mkdir_p(const char *path, mode_t mode, dpr_err *err)
{
    char tmp[PATH_MAX], parent[PATH_MAX];
    size_t n = path ? strlen(path) : 0;
    struct stat st;
    int r;

    if (n == 0)
        return dpr_err_set(err, -EINVAL, "empty directory path");
    if (n >= sizeof(tmp))
        return dpr_err_set(err, -ENAMETOOLONG, "directory path too long: %.80s...", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        bool made = mkdir(tmp, mode) == 0;
        if (!made && errno != EEXIST) {
            r = -errno;
            return dpr_err_set(err, r, "cannot create directory %s: %s", tmp, strerror(-r));
        }
        /* An entry is durable only once its parent is synced: also one that
         * existed, since whoever made it may not have synced it (systemd's
         * StateDirectory=, a run that died right after its mkdir). For
         * those, a parent we may not open or that cannot be synced is not
         * ours to sync (EACCES, EPERM, EROFS, EINVAL). */
        if (dpr_dirname(tmp, parent, sizeof(parent)) == 0 && (r = dpr_fsync_dir(parent)) < 0 &&
            (made || (r != -EACCES && r != -EPERM && r != -EROFS && r != -EINVAL)))
            return dpr_err_set(err, r, "cannot fsync %s: %s", parent, strerror(-r));
        tmp[i] = saved;
    }
    if (stat(path, &st) < 0) {
        r = -errno;
        return dpr_err_set(err, r, "cannot stat %s: %s", path, strerror(-r));
    }
    if (!S_ISDIR(st.st_mode))
        return dpr_err_set(err, -ENOTDIR, "%s exists and is not a directory", path);
    return 0;
}

int dpr_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int dpr_replace_file(const char *path, const void *data, size_t len, mode_t mode,
                     bool durable, dpr_err *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    const char *step;
    int fd = -1, r;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
        dpr_dirname(path, dir, sizeof(dir)) < 0)
        return dpr_err_set(err, -ENAMETOOLONG, "path too long: %.80s...", path);
    step = "create";
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    step = "chmod"; /* the mode asked for, whatever the umask */
    if (fchmod(fd, mode) < 0) {
        r = -errno;
        goto fail;
    }
    step = "write";
    r = dpr_write_all(fd, data, len);
    if (r < 0)
        goto fail;
    step = "fsync";
    if (durable && fsync(fd) < 0) {
        r = -errno;
        goto fail;
    }
    step = "close";
    r = close(fd);
    fd = -1;
    if (r < 0) {
        r = -errno;
        goto fail;
    }
    step = "rename";
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto fail;
    }
    if (durable && (r = dpr_fsync_dir(dir)) < 0)
        return dpr_err_set(err, r, "cannot fsync directory %s: %s", dir, strerror(-r));
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return dpr_err_set(err, r, "cannot %s %s: %s", step, step[0] == 'r' ? path : tmp,
                       strerror(-r));
}

int dpr_lock_file(const char *path, int wait_ms, int *fd_out, dpr_err *err)
{
    int fd, r, waited = 0;

    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        return dpr_err_set(err, r, "cannot open lock file %s: %s", path, strerror(-r));
    }
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        if (r == -EINTR)
            continue;
        if (r != -EWOULDBLOCK) {
            close(fd);
            return dpr_err_set(err, r, "cannot lock %s: %s", path, strerror(-r));
        }
        if (waited >= wait_ms) {
            close(fd);
            return dpr_err_set(err, -EBUSY, "%s is locked by another process", path);
        }
        nanosleep(&(struct timespec){ 0, 50 * 1000000L }, NULL);
        waited += 50;
    }
    *fd_out = fd;
    return 0;
}
