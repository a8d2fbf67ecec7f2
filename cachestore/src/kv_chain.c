/* kv_chain.c - see kv_chain.h. */
#include "kv_chain.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/err.h"

int kv_chain_scan(const char *dir, uint64_t worker, const uint64_t *v, size_t n,
                  kv_chain_file **out, dpr_err *err)
{
    char path[PATH_MAX];
    kv_chain_file *f = NULL;
    kv_ckpt_meta m;
    int r = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    f = calloc(n, sizeof(*f));
    if (!f)
        return dpr_err_set(err, -ENOMEM, "out of memory listing %zu checkpoints", n);
    for (size_t i = 0; i < n; i++) {
        r = kv_ckpt_path(path, sizeof(path), dir, v[i], 0);
        if (r < 0) {
            dpr_err_set(err, r, "state directory path too long: %s", dir);
            goto fail;
        }
        memset(&m, 0, sizeof(m));
        r = kv_ckpt_read_meta(path, &m, err);
        if (r < 0) {
            dpr_err_prefix(err, "checkpoint %" PRIu64 " cannot be used", v[i]);
            goto fail;
        }
        if (m.worker != worker || m.version != v[i]) {
            r = dpr_err_set(err, -EBADMSG, "%s holds version %" PRIu64 " of worker %" PRIu64
                            ", not version %" PRIu64 " of worker %" PRIu64,
                            path, m.version, m.worker, v[i], worker);
            goto fail;
        }
        f[i].version = m.version;
        f[i].base = m.base;
        f[i].delta = m.delta;
        f[i].committed = m.committed;
        f[i].world_line = m.world_line;
    }
    *out = f;
    return 0;
fail:
    free(f);
    return r;
}

int kv_chain_check(const kv_chain_file *f, size_t n, const char *dir, dpr_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!f[i].delta)
            continue;
        uint64_t want = i ? f[i - 1].version : 0;
        if (f[i].base != want)
            return dpr_err_set(err, -EBADMSG,
                               "%s: change log %" PRIu64 " applies to version %" PRIu64
                               " but the checkpoint before it is %s%" PRIu64
                               " (a file is missing)",
                               dir, f[i].version, f[i].base, i ? "version " : "none: ",
                               want);
    }
    return 0;
}

size_t kv_chain_start(const kv_chain_file *f, size_t n, size_t idx)
{
    for (size_t i = idx + 1; i-- > 0;)
        if (kv_chain_starts(&f[i]))
            return i;
    return n;
}

ssize_t kv_chain_at_or_below(const kv_chain_file *f, size_t n, uint64_t v)
{
    ssize_t i = (ssize_t)n - 1;

    while (i >= 0 && f[i].version > v)
        i--;
    return i;
}

int kv_chain_restore(const char *dir, uint64_t worker, const kv_chain_file *f, size_t n,
                     size_t idx, kv_dict *d, kv_ckpt_meta *m, dpr_err *err)
{
    char path[PATH_MAX];
    kv_ckpt_meta got;
    size_t s;
    int r;

    if (idx >= n)
        return dpr_err_set(err, -EINVAL, "no checkpoint %zu of %zu", idx, n);
    s = kv_chain_start(f, n, idx);
    if (s == n)
        return dpr_err_set(err, -EBADMSG, "%s: change log %" PRIu64 " has no full image before "
                           "it (a file is missing)", dir, f[idx].version);
    for (size_t i = s; i <= idx; i++) {
        /* each link applies to the one before it (kv_chain_check), checked
         * again here against the file's own header */
        r = kv_ckpt_path(path, sizeof(path), dir, f[i].version, 0);
        if (r < 0)
            return dpr_err_set(err, r, "state directory path too long: %s", dir);
        memset(&got, 0, sizeof(got));
        r = kv_ckpt_apply(path, worker, f[i].version, d, &got, err);
        if (r < 0) {
            if (r != -ENOMEM)
                dpr_err_prefix(err, "checkpoint %" PRIu64 " cannot be used", f[i].version);
            return r;
        }
        if (got.delta != (i != s || f[s].delta) ||
            (got.delta && got.base != (i == s ? 0 : f[i - 1].version)))
            return dpr_err_set(err, -EBADMSG, "%s: %s %" PRIu64 " does not follow version %"
                               PRIu64 " (base %" PRIu64 ")", dir,
                               got.delta ? "change log" : "full image", got.version,
                               i == s ? 0 : f[i - 1].version, got.base);
        if (m && i == idx)
            *m = got;
    }
    return 0;
}

size_t kv_chain_prunable(const kv_chain_file *f, size_t n, uint64_t cut)
{
    ssize_t t = kv_chain_at_or_below(f, n, cut);
    size_t s;

    if (t < 0)
        return 0;
    s = kv_chain_start(f, n, (size_t)t);
    return s == n ? 0 : s;
}
