/* kv_rdb.c - see kv_rdb.h. */
#include "kv_rdb.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_redis.h"

#define LOAD_TIMEOUT_MS 600000 /* redis-server loading a large file */
#define IO_TIMEOUT_MS 60000
#define SCAN_COUNT "1000"
#define KEY_SHOWN 60

/* Decimal digits at s (no sign, no space, no overflow): their value, *end after them. */
static bool number(const char *s, uint64_t *v, const char **end)
{
    size_t n = strspn(s, "0123456789");
    char *e;

    if (n == 0 || n > 20)
        return false;
    errno = 0;
    *v = strtoull(s, &e, 10);
    *end = e;
    return errno == 0 && e == s + n;
}

bool kv_rdb_parse_name(const char *name, uint64_t *version, uint64_t *world_line)
{
    const char *p;

    return strncmp(name, "ckpt-", 5) == 0 && number(name + 5, version, &p) &&
           strncmp(p, ".w", 2) == 0 && number(p + 2, world_line, &p) && strcmp(p, ".rdb") == 0;
}

int kv_rdb_list(const char *dir, kv_rdb_file **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    kv_rdb_file *f = NULL;
    size_t count = 0, cap = 0;

    *out = NULL;
    *n = 0;
    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        kv_rdb_file x;
        if (!kv_rdb_parse_name(e->d_name, &x.version, &x.world_line))
            continue;
        if (count == cap) {
            size_t nc = cap ? cap * 2 : 16;
            kv_rdb_file *nf = realloc(f, nc * sizeof(*nf));
            if (!nf) {
                closedir(d);
                free(f);
                return -ENOMEM;
            }
            f = nf;
            cap = nc;
        }
        size_t i = count++; /* insertion sort: a few files */
        while (i > 0 && f[i - 1].version > x.version) {
            f[i] = f[i - 1];
            i--;
        }
        f[i] = x;
    }
    closedir(d);
    *out = f;
    *n = count;
    return 0;
}

int kv_rdb_path(char *buf, size_t cap, const char *dir, const kv_rdb_file *f)
{
    int n = snprintf(buf, cap, "%s/" KV_RDB_FMT, dir, (unsigned long long)f->version,
                     (unsigned long long)f->world_line);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A key for a message: printable bytes, others as \xNN, cut after KEY_SHOWN. */
static const char *shown(char out[KEY_SHOWN * 4 + 4], const char *k, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n && i < KEY_SHOWN; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
    }
    if (n > KEY_SHOWN) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
    return out;
}

int kv_rdb_scan_page(const redisReply *r, char *cursor, size_t cap, const redisReply **keys,
                     dpr_err *err)
{
    const redisReply *c, *k;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return dpr_err_set(err, -EPROTO, "SCAN: not a two-element array (type %d)", r->type);
    c = r->element[0];
    k = r->element[1];
    if (c->type != REDIS_REPLY_STRING || c->len == 0 || (size_t)c->len >= cap ||
        strspn(c->str, "0123456789") != (size_t)c->len)
        return dpr_err_set(err, -EPROTO, "SCAN: the cursor is not a number");
    if (k->type != REDIS_REPLY_ARRAY)
        return dpr_err_set(err, -EPROTO, "SCAN: the keys are not an array");
    for (size_t i = 0; i < k->elements; i++)
        if (k->element[i]->type != REDIS_REPLY_STRING)
            return dpr_err_set(err, -EPROTO, "SCAN: key %zu is not a string", i);
    memcpy(cursor, c->str, (size_t)c->len);
    cursor[c->len] = 0;
    *keys = k;
    return 0;
}

int kv_rdb_take(kv_dict *d, const char *file, const redisReply *key, const redisReply *type,
                const redisReply *pttl, const redisReply *get, dpr_err *err)
{
    char show[KEY_SHOWN * 4 + 4];
    int r;

    if (key->type != REDIS_REPLY_STRING)
        return dpr_err_set(err, -EPROTO, "a key is not a string");
    if (type->type != REDIS_REPLY_STATUS || pttl->type != REDIS_REPLY_INTEGER)
        return dpr_err_set(err, -EPROTO, "TYPE or PTTL of key '%s': unexpected reply",
                           shown(show, key->str, (size_t)key->len));
    if (strcmp(type->str, "none") == 0 || pttl->integer == -2 || get->type == REDIS_REPLY_NIL)
        return 1; /* expired while it was read */
    if (strcmp(type->str, "string") != 0)
        return dpr_err_set(err, -ENOTSUP,
                           "key '%s' in %s is a %.20s: dpr-kv holds strings only (undo the "
                           "switch, or delete or convert the key under dpr-redis first)",
                           shown(show, key->str, (size_t)key->len), file, type->str);
    if (pttl->integer != -1)
        return dpr_err_set(err, -ENOTSUP,
                           "key '%s' in %s expires (TTL %lld ms): dpr-kv's keys do not expire "
                           "(undo the switch, or PERSIST or delete the key under dpr-redis "
                           "first)",
                           shown(show, key->str, (size_t)key->len), file, pttl->integer);
    if (get->type != REDIS_REPLY_STRING)
        return dpr_err_set(err, -EPROTO, "GET of key '%s': unexpected reply",
                           shown(show, key->str, (size_t)key->len));
    r = kv_dict_set(d, key->str, (size_t)key->len, get->str, (size_t)get->len, NULL);
    if (r < 0)
        return dpr_err_set(err, r, "key '%s': %s", shown(show, key->str, (size_t)key->len),
                           strerror(-r));
    return 0;
}

/* One SCAN page's keys: TYPE, PTTL and GET of each, pipelined, taken. */
static int read_keys(redisContext *rc, kv_dict *d, const char *file, const redisReply *keys,
                     dpr_err *err)
{
    static const char *const cmd[3] = {"TYPE", "PTTL", "GET"};
    int r = 0;

    for (size_t i = 0; i < keys->elements; i++)
        for (int c = 0; c < 3; c++) {
            const char *argv[2] = {cmd[c], keys->element[i]->str};
            size_t lens[2] = {strlen(cmd[c]), (size_t)keys->element[i]->len};
            if (redisAppendCommandArgv(rc, 2, argv, lens) != REDIS_OK)
                return dpr_err_set(err, -ENOMEM, "out of memory");
        }
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *rep[3] = {NULL, NULL, NULL};
        for (int c = 0; c < 3 && r >= 0; c++)
            r = kv_redis_reply(rc, &rep[c], err);
        if (r >= 0)
            r = kv_rdb_take(d, file, keys->element[i], rep[0], rep[1], rep[2], err);
        for (int c = 0; c < 3; c++)
            freeReplyObject(rep[c]);
        if (r < 0)
            return r; /* (the connection is dropped with the rest in flight) */
    }
    return 0;
}

static int read_all(const char *socket, kv_dict *d, const char *file, size_t *skipped,
                    dpr_err *err)
{
    redisContext *rc = kv_redis_connect(socket, IO_TIMEOUT_MS, KV_RDB_MAX_ELEMENTS, err);
    char cursor[32] = "0";
    int r = 0;

    if (!rc)
        return -ECONNREFUSED;
    do {
        const char *argv[4] = {"SCAN", cursor, "COUNT", SCAN_COUNT};
        const redisReply *keys;
        redisReply *page = NULL;
        size_t before = kv_dict_size(d);
        if (redisAppendCommandArgv(rc, 4, argv, NULL) != REDIS_OK)
            r = dpr_err_set(err, -ENOMEM, "out of memory");
        if (r == 0)
            r = kv_redis_reply(rc, &page, err);
        if (r == 0)
            r = kv_rdb_scan_page(page, cursor, sizeof(cursor), &keys, err);
        if (r == 0)
            r = read_keys(rc, d, file, keys, err);
        if (r == 0)
            *skipped += keys->elements - (kv_dict_size(d) - before);
        freeReplyObject(page);
    } while (r == 0 && strcmp(cursor, "0") != 0);
    kv_redis_close(rc);
    return r;
}

/* Removes the private directory and what is in it (flat). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];

    if (d) {
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                dpr_path_join(path, sizeof(path), dir, e->d_name) == 0)
                unlink(path);
        closedir(d);
    }
    if (rmdir(dir) < 0)
        log_warning("cannot remove %s: %s", dir, strerror(errno));
}

int kv_rdb_load(const char *path, kv_dict *d, dpr_err *err)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], sock[PATH_MAX], link_path[PATH_MAX], *target = NULL;
    size_t skipped = 0;
    pid_t pid = 0;
    int r;

    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(dir, sizeof(dir), "%s/dpr-kv-rdb.XXXXXX", tmp) >= (int)sizeof(dir) ||
        dpr_path_join(sock, sizeof(sock), dir, "redis.sock") < 0 ||
        dpr_path_join(link_path, sizeof(link_path), dir, "load.rdb") < 0)
        return dpr_err_set(err, -ENAMETOOLONG, "temporary directory name too long: %s", tmp);
    target = realpath(path, NULL);
    if (!target)
        return dpr_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    if (!mkdtemp(dir)) {
        r = dpr_err_set(err, -errno, "cannot create a directory in %s: %s", tmp,
                        strerror(errno));
        free(target);
        return r;
    }
    /* (the template had the real name's length: checked above) */
    (void)dpr_path_join(sock, sizeof(sock), dir, "redis.sock");
    (void)dpr_path_join(link_path, sizeof(link_path), dir, "load.rdb");
    if (symlink(target, link_path) < 0) {
        r = dpr_err_set(err, -errno, "cannot link %s into %s: %s", path, dir, strerror(errno));
        goto out;
    }
    kv_redis_opts o = {.sockdir = dir, .socket = sock, .dir = dir, .dbfile = "load.rdb",
                       .maxmemory = 0, .timeout_ms = LOAD_TIMEOUT_MS};
    r = kv_redis_start(&o, &pid, err);
    if (r < 0) {
        dpr_err_prefix(err, "cannot read %s", path);
        goto out;
    }
    r = read_all(sock, d, path, &skipped, err);
    if (r < 0 && r != -ENOTSUP)
        dpr_err_prefix(err, "cannot read %s", path);
    if (r == 0)
        log_info("read %zu keys from %s (dpr-redis' checkpoint; %zu expired meanwhile)",
                 kv_dict_size(d), path, skipped);
out:
    kv_redis_kill(pid);
    remove_dir(dir);
    free(target);
    return r;
}
