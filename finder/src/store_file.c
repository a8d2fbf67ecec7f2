/*
 * store_file.c - the finder's durable state in one local file (see store.h
 * and docs/finder-store.md); the image's format is store_image.c's.
 *
 * save() replaces `finder.state` with dpr_replace_file (write
 * `finder.state.tmp`, fsync, rename, fsync the directory), so at any
 * instant the directory holds either the old or the new complete file. A
 * leftover temporary file (crash before the rename) is removed when the
 * store is opened.
 */
#include "dpr/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/fs.h"

#define STATE_NAME "finder.state"
#define TMP_NAME "finder.state.tmp" /* what dpr_replace_file writes */
#define LOCK_NAME "finder.lock"

#define MAX_FILE_LEN DPR_STORE_IMAGE_MAX

typedef struct file_store {
    dpr_store base;
    char state_path[PATH_MAX];
    int lock_fd;
    dpr_buf out; /* reused serialisation buffer */
    dpr_err err; /* the last failed load or save */
} file_store;

static int fs_load(dpr_store *s, dpr_domains_state *out)
{
    file_store *fs = (file_store *)s;
    char *data = NULL;
    size_t len = 0;
    struct stat sb;
    int fd, rc;

    fd = open(fs->state_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT)
            return dpr_err_set(&fs->err, rc, "%s: no state yet", fs->state_path);
        return dpr_err_set(&fs->err, rc, "%s: cannot open: %s", fs->state_path, strerror(-rc));
    }
    /* a file too large to be valid is refused before it is read */
    if (fstat(fd, &sb) < 0)
        rc = -errno;
    else if ((uint64_t)sb.st_size > MAX_FILE_LEN)
        rc = -EFBIG;
    else
        rc = dpr_read_fd(fd, MAX_FILE_LEN, &data, &len);
    close(fd);
    if (rc == -EFBIG)
        return dpr_err_set(&fs->err, -EBADMSG, "%s: corrupt state file: larger than %zu bytes",
                           fs->state_path, MAX_FILE_LEN);
    if (rc < 0)
        return dpr_err_set(&fs->err, rc, "%s: cannot read: %s", fs->state_path, strerror(-rc));
    rc = dpr_store_image_decode(data, len, fs->state_path, out, &fs->err);
    free(data);
    return rc;
}

static int fs_save(dpr_store *s, const dpr_domains_state *st)
{
    file_store *fs = (file_store *)s;
    int rc;

    rc = dpr_store_image_encode(st, &fs->out, &fs->err);
    if (rc < 0) {
        dpr_err_prefix(&fs->err, "%s", fs->state_path);
        return rc;
    }
    return dpr_replace_file(fs->state_path, fs->out.data, fs->out.len, 0600, true, &fs->err);
}

static const char *fs_error(dpr_store *s)
{
    file_store *fs = (file_store *)s;

    return fs->err.msg[0] ? fs->err.msg : NULL;
}

static void fs_close(dpr_store *s)
{
    file_store *fs = (file_store *)s;

    if (fs->lock_fd >= 0)
        close(fs->lock_fd); /* releases the lock */
    dpr_buf_free(&fs->out);
    free(fs);
}

static const dpr_store_ops file_ops = {
    .load = fs_load,
    .save = fs_save,
    .close = fs_close,
    .error = fs_error,
};

int dpr_store_file_open(const char *dir, dpr_store **out, dpr_err *err)
{
    char lock_path[PATH_MAX], tmp_path[PATH_MAX];
    file_store *fs;
    int rc;

    *out = NULL;
    if (!dir || !*dir)
        return dpr_err_set(err, -EINVAL, "state directory: empty path");
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        return dpr_err_set(err, -ENOMEM, "%s: out of memory", dir);
    fs->base.ops = &file_ops;
    fs->lock_fd = -1;
    dpr_buf_init(&fs->out);
    if (dpr_path_join(fs->state_path, sizeof(fs->state_path), dir, STATE_NAME) < 0 ||
        dpr_path_join(tmp_path, sizeof(tmp_path), dir, TMP_NAME) < 0 ||
        dpr_path_join(lock_path, sizeof(lock_path), dir, LOCK_NAME) < 0) {
        rc = dpr_err_set(err, -ENAMETOOLONG, "state directory path too long: %.80s...", dir);
        goto fail;
    }
    rc = dpr_mkdir_p(dir, 0700, err);
    if (rc < 0) {
        dpr_err_prefix(err, "cannot create the state directory");
        goto fail;
    }
    rc = dpr_lock_file(lock_path, 0, &fs->lock_fd, err);
    if (rc == -EBUSY)
        rc = dpr_err_set(err, rc, "%s: state directory in use by another dpr-finder (%s is "
                         "locked)", dir, lock_path);
    if (rc < 0)
        goto fail;
    /* A temporary file is left only by a crash before its rename: the
     * state it held was never durable, so nobody was told about it. */
    if (unlink(tmp_path) < 0 && errno != ENOENT) {
        rc = -errno;
        dpr_err_set(err, rc, "%s: cannot remove a leftover temporary file: %s", tmp_path,
                    strerror(-rc));
        goto fail;
    }
    *out = &fs->base;
    return 0;
fail:
    fs_close(&fs->base);
    return rc;
}
