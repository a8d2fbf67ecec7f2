/* kv_layout.c - see kv_layout.h. */
#include "kv_layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/num.h"
#include "common/resp.h"
#include "dpr/route.h"

#define MAGIC "dpr-kv-layout"
#define FORMAT "1"

void kv_layout_free(kv_layout *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; l->addrs && i < l->nshards; i++)
        free(l->addrs[i]);
    free(l->addrs);
    memset(l, 0, sizeof(*l));
}

void kv_layout_state_free(kv_layout_state *st)
{
    kv_layout_free(&st->active);
    kv_layout_free(&st->pending);
}

int kv_layout_copy(kv_layout *dst, const kv_layout *src)
{
    kv_layout t = {.epoch = src->epoch, .shard = src->shard, .nshards = 0};
    int rc = 0;

    if (src->nshards) {
        t.addrs = calloc(src->nshards, sizeof(*t.addrs));
        if (!t.addrs)
            return -ENOMEM;
        for (; t.nshards < src->nshards; t.nshards++) {
            if (!(t.addrs[t.nshards] = strdup(src->addrs[t.nshards]))) {
                rc = -ENOMEM;
                break;
            }
        }
    }
    if (rc < 0) {
        kv_layout_free(&t);
        return rc;
    }
    kv_layout_free(dst);
    *dst = t;
    return 0;
}

bool kv_layout_equal(const kv_layout *a, const kv_layout *b)
{
    if (a->epoch != b->epoch || a->shard != b->shard || a->nshards != b->nshards)
        return false;
    for (uint32_t i = 0; i < a->nshards; i++)
        if (strcmp(a->addrs[i], b->addrs[i]) != 0)
            return false;
    return true;
}

int kv_layout_parse(size_t argc, const kv_arg *argv, kv_layout *out, dpr_err *err)
{
    kv_layout l = {0, 0, 0, NULL};
    uint64_t v;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (argc < 3) {
        rc = dpr_err_set(err, -EINVAL, "a layout needs an epoch, this shard's index and the "
                         "address of every shard");
        goto out;
    }
    if (argc - 2 > KV_LAYOUT_MAX_SHARDS) {
        rc = dpr_err_set(err, -EINVAL, "%zu shards: at most %d", argc - 2,
                         KV_LAYOUT_MAX_SHARDS);
        goto out;
    }
    if (dpr_parse_u64(argv[0].p, argv[0].n, 1, INT64_MAX, &l.epoch) < 0) {
        rc = dpr_err_set(err, -EINVAL, "invalid layout epoch '%.*s': expected 1..%lld",
                         (int)(argv[0].n > 32 ? 32 : argv[0].n), argv[0].p,
                         (long long)INT64_MAX);
        goto out;
    }
    if (argv[1].n == 1 && argv[1].p[0] == '-') {
        l.shard = KV_LAYOUT_NO_SHARD;
    } else if (dpr_parse_u64(argv[1].p, argv[1].n, 0, argc - 3, &v) == 0) {
        l.shard = (uint32_t)v;
    } else {
        rc = dpr_err_set(err, -EINVAL, "invalid shard index '%.*s': expected 0..%zu or '-' "
                         "(this shard leaves)", (int)(argv[1].n > 32 ? 32 : argv[1].n),
                         argv[1].p, argc - 3);
        goto out;
    }
    l.addrs = calloc(argc - 2, sizeof(*l.addrs));
    if (!l.addrs) {
        rc = dpr_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 2; i < argc; i++) {
        dpr_hostport hp;
        dpr_err why;
        if (argv[i].n > KV_LAYOUT_MAX_ADDR || memchr(argv[i].p, '\0', argv[i].n) ||
            dpr_hostport_parse_n(argv[i].p, argv[i].n, 0, &hp, &why) < 0) {
            rc = dpr_err_set(err, -EINVAL, "shard %zu: invalid address '%.*s' (expected "
                             "HOST:PORT)", i - 2, (int)(argv[i].n > 64 ? 64 : argv[i].n),
                             argv[i].p);
            goto out;
        }
        if (!(l.addrs[l.nshards] = strndup(argv[i].p, argv[i].n))) {
            rc = dpr_err_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        l.nshards++;
    }
    *out = l;
    return 0;
out:
    kv_layout_free(&l);
    return rc;
}

uint32_t kv_layout_owner(const kv_layout *l, const char *key, size_t n)
{
    return dpr_route_shard(key, n, l->nshards);
}

bool kv_layout_owns(const kv_layout *l, const char *key, size_t n)
{
    if (l->epoch == 0)
        return true;
    return l->shard != KV_LAYOUT_NO_SHARD && kv_layout_owner(l, key, n) == l->shard;
}

/* ---- the file ------------------------------------------------------------ */

static void put_layout(dpr_buf *b, const char *tag, const kv_layout *l)
{
    dpr_resp_array(b, 3 + (size_t)l->nshards);
    dpr_resp_bulk_str(b, tag);
    dpr_resp_bulk_u64(b, l->epoch);
    if (l->shard == KV_LAYOUT_NO_SHARD)
        dpr_resp_bulk_str(b, "-");
    else
        dpr_resp_bulk_u64(b, l->shard);
    for (uint32_t i = 0; i < l->nshards; i++)
        dpr_resp_bulk_str(b, l->addrs[i]);
}

int kv_layout_encode(const kv_layout_state *st, dpr_buf *out)
{
    char crc[9];

    dpr_resp_array(out, 2);
    dpr_resp_bulk_str(out, MAGIC);
    dpr_resp_bulk_str(out, FORMAT);
    if (st->active.epoch)
        put_layout(out, "active", &st->active);
    if (st->pending.epoch)
        put_layout(out, "pending", &st->pending);
    if (dpr_buf_failed(out))
        return -ENOMEM;
    snprintf(crc, sizeof(crc), "%08lx", crc32(0L, (const Bytef *)out->data, (uInt)out->len));
    dpr_resp_array(out, 2);
    dpr_resp_bulk_str(out, "crc32");
    dpr_resp_bulk_str(out, crc);
    return dpr_buf_failed(out) ? -ENOMEM : 0;
}

static bool arg_is(const kv_arg *a, const char *s)
{
    return a->n == strlen(s) && memcmp(a->p, s, a->n) == 0;
}

int kv_layout_decode(const char *data, size_t len, kv_layout_state *out, dpr_err *err)
{
    kv_parser p;
    size_t pos = 0, argc, line = 0;
    kv_arg *argv;
    const char *why = NULL;
    bool seen_crc = false;
    dpr_err field;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    kv_parser_init(&p, KV_LAYOUT_FILE_MAX, KV_LAYOUT_MAX_SHARDS + 3);
    while (pos < len) {
        ssize_t n = kv_parse(&p, data + pos, len - pos, &argc, &argv, &why);
        if (n == 0) {
            rc = dpr_err_set(err, -EBADMSG, "truncated");
            goto out;
        }
        if (n < 0) {
            rc = dpr_err_set(err, -EBADMSG, "%s", n == -ENOMEM ? "out of memory" : why);
            goto out;
        }
        line++;
        if (seen_crc) {
            rc = dpr_err_set(err, -EBADMSG, "bytes after the checksum");
            goto out;
        }
        if (argc == 0) {
            rc = dpr_err_set(err, -EBADMSG, "empty entry %zu", line);
            goto out;
        }
        if (line == 1) {
            if (argc != 2 || !arg_is(&argv[0], MAGIC)) {
                rc = dpr_err_set(err, -EBADMSG, "not a dpr-kv layout file");
                goto out;
            }
            if (!arg_is(&argv[1], FORMAT)) {
                rc = dpr_err_set(err, -EBADMSG, "unsupported format '%.*s' (this dpr-kv "
                                 "reads format %s)", (int)(argv[1].n > 16 ? 16 : argv[1].n),
                                 argv[1].p, FORMAT);
                goto out;
            }
        } else if (arg_is(&argv[0], "crc32")) {
            char want[9];
            snprintf(want, sizeof(want), "%08lx", crc32(0L, (const Bytef *)data, (uInt)pos));
            if (argc != 2 || !arg_is(&argv[1], want)) {
                rc = dpr_err_set(err, -EBADMSG, "checksum mismatch");
                goto out;
            }
            seen_crc = true;
        } else if (arg_is(&argv[0], "active") || arg_is(&argv[0], "pending")) {
            kv_layout *l = argv[0].p[0] == 'a' ? &out->active : &out->pending;
            if (l->epoch) {
                rc = dpr_err_set(err, -EBADMSG, "two %s layouts", argv[0].p[0] == 'a' ?
                                 "active" : "pending");
                goto out;
            }
            if (kv_layout_parse(argc - 1, argv + 1, l, &field) < 0) {
                rc = dpr_err_set(err, field.code == -ENOMEM ? -ENOMEM : -EBADMSG, "%s layout: %s",
                                 argv[0].p[0] == 'a' ? "active" : "pending", field.msg);
                goto out;
            }
        } else {
            rc = dpr_err_set(err, -EBADMSG, "unknown entry '%.*s'",
                             (int)(argv[0].n > 16 ? 16 : argv[0].n), argv[0].p);
            goto out;
        }
        pos += (size_t)n;
    }
    if (!seen_crc) {
        rc = dpr_err_set(err, -EBADMSG, line ? "no checksum" : "empty file");
        goto out;
    }
    if (out->pending.epoch && out->pending.epoch <= out->active.epoch) {
        rc = dpr_err_set(err, -EBADMSG, "pending layout %llu is not newer than the active "
                         "one (%llu)", (unsigned long long)out->pending.epoch,
                         (unsigned long long)out->active.epoch);
        goto out;
    }
out:
    kv_parser_free(&p);
    return rc;
}

int kv_layout_epoch_arg(const kv_arg *a, uint64_t *epoch, dpr_buf *out)
{
    if (dpr_parse_u64(a->p, a->n, 1, INT64_MAX, epoch) == 0)
        return 0;
    dpr_resp_error(out, "ERR invalid layout epoch: expected 1..9223372036854775807");
    return -1;
}
