/* cutreply.c - see cutreply.h. */
#include "cutreply.h"

#include <errno.h>
#include <hiredis/hiredis.h>

bool dpr_cutreply_u64(const redisReply *r, uint64_t *out)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return false;
    *out = (uint64_t)r->integer;
    return true;
}

int dpr_cutreply_flat(const redisReply *r, dpr_depset *out)
{
    int ret = 0;

    dpr_depset_clear(out);
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        ret = -EPROTO;
        goto out;
    }
    for (size_t i = 0; i < r->elements; i += 2) {
        uint64_t w, v;
        if (!dpr_cutreply_u64(r->element[i], &w) || !dpr_cutreply_u64(r->element[i + 1], &v)) {
            ret = -EPROTO;
            goto out;
        }
        ret = dpr_depset_put_max(out, w, v);
        if (ret < 0)
            goto out;
    }
out:
    return ret;
}
