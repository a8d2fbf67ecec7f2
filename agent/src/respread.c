/* respread.c - see respread.h. */
#include "respread.h"

#include <errno.h>
#include <string.h>

#include "common/err.h"

/* hiredis' array, once the elements of the reply in progress stay within
 * the bound (NULL: the reader fails, "out of memory") */
static void *bounded_array(const redisReadTask *task, int elements)
{
    agent_respread *rd = task->privdata;

    if (elements < 0 || (size_t)elements > rd->max / 3 - rd->elements) {
        rd->too_big = true;
        return NULL;
    }
    rd->elements += (size_t)elements;
    return rd->array(task, elements);
}

int agent_respread_init(agent_respread *rd, size_t max)
{
    memset(rd, 0, sizeof(*rd));
    rd->r = redisReaderCreate();
    if (!rd->r)
        return -ENOMEM;
    rd->fn = *rd->r->fn;
    rd->array = rd->fn.createArray;
    rd->fn.createArray = bounded_array;
    rd->r->fn = &rd->fn;
    rd->r->privdata = rd;
    rd->max = max < 3 ? 3 : max;
    return 0;
}

void agent_respread_free(agent_respread *rd)
{
    if (rd && rd->r)
        redisReaderFree(rd->r);
    if (rd)
        rd->r = NULL;
}

int agent_respread_feed(agent_respread *rd, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (redisReaderFeed(rd->r, data, n) != REDIS_OK)
        return -ENOMEM;
    rd->partial += n;
    return 0;
}

int agent_respread_next(agent_respread *rd, redisReply **out, dpr_err *err)
{
    void *rep = NULL;

    *out = NULL;
    if (rd->too_big)
        return dpr_err_set(err, -EMSGSIZE, "a reply of more than %zu bytes", rd->max);
    if (redisReaderGetReply(rd->r, &rep) != REDIS_OK) {
        if (rd->too_big)
            return dpr_err_set(err, -EMSGSIZE, "a reply of more than %zu bytes", rd->max);
        return dpr_err_set(err, rd->r->err == REDIS_ERR_OOM ? -ENOMEM : -EPROTO,
                           "not RESP: %s", rd->r->errstr);
    }
    if (!rep) {
        if (rd->partial <= rd->max)
            return 0;
        rd->too_big = true;
        return dpr_err_set(err, -EMSGSIZE, "a reply of more than %zu bytes", rd->max);
    }
    /* (what is left in the reader's buffer is of the next replies; the
     * rest of what came since the last one is this one, maybe whole in
     * one piece) */
    size_t left = rd->r->len - rd->r->pos;
    if (rd->partial - left > rd->max) {
        freeReplyObject(rep);
        rd->too_big = true;
        return dpr_err_set(err, -EMSGSIZE, "a reply of more than %zu bytes", rd->max);
    }
    rd->partial = left;
    rd->elements = 0;
    *out = rep;
    return 1;
}
