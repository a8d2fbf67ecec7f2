/*
 * common/fs.h - files and directories, crash-safe where it matters.
 *
 * One policy for new directories: dpr_mkdir_p creates every missing
 * component with the mode asked for and fsyncs the parent of every
 * component, the ones it created and the ones that existed (made by
 * someone who may not have synced them, e.g. systemd's StateDirectory=),
 * so a directory that a durable file goes into survives a power cut
 * together with the file (tests/python-dpr/test_power_loss.py). One policy
 * for replacing a file: write a temporary file beside it, fsync it, rename
 * it over the old one and fsync the directory (dpr_replace_file): at any
 * instant the old or the new file is there, whole. All functions return 0 or a negative errno; those with a
 * dpr_err say which file and which step failed.
 */
#ifndef COMMON_FS_H
#define COMMON_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

/* write(2) until all n bytes are written (retries EINTR and short writes). */
int dpr_write_all(int fd, const void *p, size_t n);

/* Reads a whole file at fd (from its current offset) into a fresh buffer
 * (*out, free() it; NUL-terminated beyond *len). -EFBIG above limit bytes. */
int dpr_read_fd(int fd, size_t limit, char **out, size_t *len);

/* mkdir -p with the policy above; -ENOTDIR when a component is a file. */
int dpr_mkdir_p(const char *path, mode_t mode, dpr_err *err);
/* fsync of a directory (by path), so entries created or renamed in it are
 * durable. */
int dpr_fsync_dir(const char *path);
/* The directory part of path ("." for a bare name) into out. */
int dpr_dirname(const char *path, char *out, size_t cap);

/* Replaces path with data, as described above; the file gets exactly
 * `mode` (the umask does not apply). With
 * durable false the fsyncs are left out (files under /run, rewritten at
 * every start): the rename still makes the change atomic. */
int dpr_replace_file(const char *path, const void *data, size_t len, mode_t mode,
                     bool durable, dpr_err *err);

/*
 * Takes an exclusive lock (flock) on path, created (0600) if missing, and
 * keeps it in *fd: closing the fd releases it (so does the end of the
 * process). While another process holds it, waits up to wait_ms
 * (0: not at all), then -EBUSY with a message naming the file.
 */
int dpr_lock_file(const char *path, int wait_ms, int *fd, dpr_err *err);

/* "dir/name" into out: -ENAMETOOLONG when it does not fit. */
int dpr_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
