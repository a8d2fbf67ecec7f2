/* rp_keys.c - see rp_keys.h. */
#include "rp_keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/num.h"

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static void spec_free(rp_cmdinfo *ci)
{
    for (size_t i = 0; i < ci->nspecs; i++)
        free(ci->specs[i].word);
    free(ci->specs);
    ci->specs = NULL;
    ci->nspecs = 0;
}

void rp_keys_free(rp_keys *t)
{
    for (size_t i = 0; i < t->cap; i++)
        spec_free(&t->cmds[i]);
    free(t->cmds);
    memset(t, 0, sizeof(*t));
}

static const rp_cmdinfo *find(const rp_keys *t, const char *name, size_t n)
{
    if (!t->cap)
        return NULL;
    for (size_t i = name_hash(name, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const rp_cmdinfo *ci = &t->cmds[i];
        if (!ci->name[0])
            return NULL;
        if (strlen(ci->name) == n && memcmp(ci->name, name, n) == 0)
            return ci;
    }
}

/* --- loading ------------------------------------------------------------ */

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool str_eq(const redisReply *r, const char *s)
{
    return is_str(r) && r->len == strlen(s) && strncasecmp(r->str, s, r->len) == 0;
}

/* The value of field `name` in a flat (name, value, ...) array, or NULL. */
static const redisReply *field(const redisReply *map, const char *name)
{
    if (!map || map->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < map->elements; i += 2)
        if (str_eq(map->element[i], name))
            return map->element[i + 1];
    return NULL;
}

static int int_field(const redisReply *map, const char *name, int *out)
{
    const redisReply *v = field(map, name);
    if (!v || v->type != REDIS_REPLY_INTEGER || v->integer < -65536 || v->integer > 65536)
        return -EPROTO;
    *out = (int)v->integer;
    return 0;
}

static bool has_flag(const redisReply *flags, const char *flag)
{
    if (!flags || flags->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < flags->elements; i++)
        if (str_eq(flags->element[i], flag))
            return true;
    return false;
}

/* One key spec into *ks; 1 when it is to be skipped (not_key), 2 for a
 * search of type "unknown" (its keys cannot be found). */
static int parse_spec(const redisReply *r, rp_keyspec *ks)
{
    const redisReply *bs = field(r, "begin_search"), *fk = field(r, "find_keys");
    const redisReply *bss = field(bs, "spec"), *fks = field(fk, "spec"), *type;

    memset(ks, 0, sizeof(*ks));
    if (!bs || !fk)
        return -EPROTO;
    if (has_flag(field(r, "flags"), "not_key"))
        return 1;
    type = field(bs, "type");
    if (str_eq(type, "index")) {
        if (int_field(bss, "index", &ks->index) < 0)
            return -EPROTO;
    } else if (str_eq(type, "keyword")) {
        const redisReply *w = field(bss, "keyword");
        if (!is_str(w) || int_field(bss, "startfrom", &ks->index) < 0)
            return -EPROTO;
        ks->keyword = true;
        if (!(ks->word = strndup(w->str, w->len)))
            return -ENOMEM;
    } else if (str_eq(type, "unknown")) {
        return 2;
    } else {
        return -EPROTO;
    }
    type = field(fk, "type");
    if (str_eq(type, "range")) {
        if (int_field(fks, "lastkey", &ks->a) < 0 || int_field(fks, "keystep", &ks->step) < 0 ||
            int_field(fks, "limit", &ks->b) < 0)
            goto bad;
    } else if (str_eq(type, "keynum")) {
        ks->keynum = true;
        if (int_field(fks, "keynumidx", &ks->a) < 0 || int_field(fks, "firstkey", &ks->b) < 0 ||
            int_field(fks, "keystep", &ks->step) < 0)
            goto bad;
    } else if (str_eq(type, "unknown")) {
        free(ks->word);
        ks->word = NULL;
        return 2;
    } else {
        goto bad;
    }
    if (ks->step < 1 || ks->b < 0 || ks->a < -65536)
        goto bad;
    return 0;
bad:
    free(ks->word);
    ks->word = NULL;
    return -EPROTO;
}

static int insert(rp_keys *t, const redisReply *e, dpr_err *err);

static int grow(rp_keys *t)
{
    rp_keys bigger = {NULL, t->cap ? t->cap * 2 : 512, 0};

    bigger.cmds = calloc(bigger.cap, sizeof(*bigger.cmds));
    if (!bigger.cmds)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        rp_cmdinfo *ci = &t->cmds[i];
        if (!ci->name[0])
            continue;
        size_t j = name_hash(ci->name, strlen(ci->name)) & (bigger.cap - 1);
        while (bigger.cmds[j].name[0])
            j = (j + 1) & (bigger.cap - 1);
        bigger.cmds[j] = *ci;
        bigger.n++;
    }
    free(t->cmds);
    *t = bigger;
    return 0;
}

/* One entry of COMMAND: name, arity, flags, first, last, step, ACL
 * categories, tips, key specs, subcommands (Redis 7). */
static int insert(rp_keys *t, const redisReply *e, dpr_err *err)
{
    rp_cmdinfo ci;
    const redisReply *name, *specs, *subs;
    int r;

    memset(&ci, 0, sizeof(ci));
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 10 || !is_str(name = e->element[0]) ||
        e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
        (specs = e->element[8])->type != REDIS_REPLY_ARRAY ||
        (subs = e->element[9])->type != REDIS_REPLY_ARRAY)
        return dpr_err_set(err, -EPROTO, "COMMAND: an entry is not a Redis 7 command entry");
    if (name->len == 0 || name->len >= RP_KEYS_NAME_MAX)
        return dpr_err_set(err, -EPROTO, "COMMAND: a command name of %zu bytes", name->len);
    for (size_t i = 0; i < name->len; i++)
        ci.name[i] = (char)tolower((unsigned char)name->str[i]);
    if (find(t, ci.name, name->len))
        return dpr_err_set(err, -EPROTO, "COMMAND: '%s' twice", ci.name);
    ci.arity = (int)e->element[1]->integer;
    ci.write = has_flag(e->element[2], "write");
    ci.has_subs = subs->elements > 0;
    if (specs->elements) {
        ci.specs = calloc(specs->elements, sizeof(*ci.specs));
        if (!ci.specs)
            return dpr_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < specs->elements; i++) {
        r = parse_spec(specs->element[i], &ci.specs[ci.nspecs]);
        if (r < 0) {
            spec_free(&ci);
            return dpr_err_set(err, r, "COMMAND: %s of '%s'",
                               r == -ENOMEM ? "out of memory" : "a malformed key spec", ci.name);
        }
        if (r == 0)
            ci.nspecs++;
        ci.unknown |= r == 2;
    }
    /* Redis 7.0 flags EVAL and FCALL neither "write" nor "may_replicate":
     * only "readonly", or no keys at all and neither flag (PING, INFO,
     * TIME ...), is taken as not changing the data */
    ci.may_write = !(has_flag(e->element[2], "readonly") ||
                     (specs->elements == 0 && !ci.write &&
                      !has_flag(e->element[2], "may_replicate")));
    if ((t->n + 1) * 2 > t->cap && (r = grow(t)) < 0) {
        spec_free(&ci);
        return dpr_err_set(err, r, "out of memory");
    }
    size_t j = name_hash(ci.name, name->len) & (t->cap - 1);
    while (t->cmds[j].name[0])
        j = (j + 1) & (t->cap - 1);
    t->cmds[j] = ci;
    t->n++;
    for (size_t i = 0; i < subs->elements; i++)
        if ((r = insert(t, subs->element[i], err)) < 0)
            return r;
    return 0;
}

int rp_keys_load(rp_keys *t, const redisReply *reply, dpr_err *err)
{
    int r = 0;

    memset(t, 0, sizeof(*t));
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
        return dpr_err_set(err, -EPROTO, "COMMAND: the reply is not a list of commands");
    for (size_t i = 0; i < reply->elements && r == 0; i++)
        r = insert(t, reply->element[i], err);
    if (r < 0)
        rp_keys_free(t);
    return r;
}

/* --- lookups (the hot path) --------------------------------------------- */

static size_t lower(char *out, size_t cap, const kv_arg *a, size_t at)
{
    if (at + a->n >= cap)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        out[at + i] = (char)tolower((unsigned char)a->p[i]);
    return at + a->n;
}

const rp_cmdinfo *rp_keys_lookup(const rp_keys *t, size_t argc, const kv_arg *argv)
{
    char name[RP_KEYS_NAME_MAX];
    const rp_cmdinfo *ci;
    size_t n;

    if (argc == 0 || (n = lower(name, sizeof(name), &argv[0], 0)) == 0)
        return NULL;
    ci = find(t, name, n);
    if (!ci || !ci->has_subs || argc < 2)
        return ci;
    name[n++] = '|';
    if ((n = lower(name, sizeof(name), &argv[1], n)) == 0)
        return NULL;
    return find(t, name, n); /* an unknown subcommand: Redis refuses it */
}

/* Where spec ks begins in argv: the first key's index, or 0 (no keys). */
static long spec_first(const rp_keyspec *ks, size_t argc, const kv_arg *argv)
{
    long n = (long)argc, from, to;

    if (!ks->keyword)
        return ks->index;
    from = ks->index > 0 ? ks->index : n + ks->index;
    to = ks->index > 0 ? n - 1 : 0;
    for (long i = from; i >= 1 && i < n; i += from <= to ? 1 : -1) {
        if (argv[i].n == strlen(ks->word) && strncasecmp(argv[i].p, ks->word, argv[i].n) == 0)
            return i + 1;
        if (i == to)
            break;
    }
    return 0;
}

ssize_t rp_keys_first_foreign(const rp_cmdinfo *ci, size_t argc, const kv_arg *argv,
                              bool (*owned)(void *ud, const char *key, size_t n), void *ud)
{
    long n = (long)argc;

    for (size_t s = 0; s < ci->nspecs; s++) {
        const rp_keyspec *ks = &ci->specs[s];
        long first = spec_first(ks, argc, argv), last;
        if (first <= 0)
            continue;
        if (!ks->keynum) {
            if (ks->a >= 0)
                last = first + ks->a;
            else if (!ks->b)
                last = n + ks->a;
            else
                last = first + ((n - first) / ks->b + ks->a);
        } else {
            uint64_t count;
            long at = first + ks->a;
            if (at < 1 || at >= n ||
                dpr_parse_u64(argv[at].p, argv[at].n, 0, (uint64_t)n, &count) < 0)
                continue; /* Redis refuses it */
            first += ks->b;
            last = first + ((long)count - 1) * ks->step;
        }
        for (long i = first; i <= last && i < n; i += ks->step)
            if (i >= 1 && !owned(ud, argv[i].p, argv[i].n))
                return i;
    }
    return -1;
}
