/* replyreader.c - see replyreader.h. */
#include "replyreader.h"

#include <stdlib.h>

typedef struct bound {
    redisReplyObjectFunctions fn; /* hiredis' own, but createArray */
    void *(*array)(const redisReadTask *task, int elements);
    size_t max, elements;
} bound;

/* hiredis' array while the reply's elements stay within the bound (NULL:
 * the reader fails, "out of memory") */
static void *bounded_array(const redisReadTask *task, int elements)
{
    bound *b = task->privdata;

    if (elements < 0 || (size_t)elements > b->max - b->elements)
        return NULL;
    b->elements += (size_t)elements;
    return b->array(task, elements);
}

redisReader *dpr_replyreader_new(size_t max_elements)
{
    redisReader *r = redisReaderCreate();
    bound *b = calloc(1, sizeof(*b));

    if (!r || !b) {
        free(b);
        if (r)
            redisReaderFree(r);
        return NULL;
    }
    b->fn = *r->fn;
    b->array = b->fn.createArray;
    b->fn.createArray = bounded_array;
    b->max = max_elements;
    r->fn = &b->fn;
    r->privdata = b;
    return r;
}

void dpr_replyreader_reply_done(redisReader *r)
{
    bound *b = r->privdata;

    b->elements = 0;
}

void dpr_replyreader_free(redisReader *r)
{
    bound *b;

    if (!r)
        return;
    b = r->privdata;
    redisReaderFree(r); /* (frees a reply in progress through b->fn) */
    free(b);
}
