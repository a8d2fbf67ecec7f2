/* kv_batchops.c - see kv_batchops.h. */
#include "kv_batchops.h"

#include "dpr/wire.h" /* dpr_put_u32, dpr_get_u32 */

static void put_u32(dpr_buf *b, uint32_t v)
{
    uint8_t p[4];

    dpr_put_u32(p, v);
    dpr_buf_append(b, p, 4);
}

size_t kv_batchops_size(size_t argc, const kv_arg *argv)
{
    size_t need = 4;

    for (size_t i = 0; i < argc; i++)
        need += 4 + argv[i].n;
    return need;
}

void kv_batchops_put(dpr_buf *b, size_t argc, const kv_arg *argv)
{
    put_u32(b, (uint32_t)argc);
    for (size_t i = 0; i < argc; i++) {
        put_u32(b, (uint32_t)argv[i].n);
        dpr_buf_append(b, argv[i].p, argv[i].n);
    }
}

uint32_t kv_batchops_argc(const char *op)
{
    return dpr_get_u32((const uint8_t *)op);
}

const char *kv_batchops_args(const char *op, kv_arg *av)
{
    const uint8_t *p = (const uint8_t *)op;
    uint32_t argc = dpr_get_u32(p);

    p += 4;
    for (uint32_t i = 0; i < argc; i++) {
        av[i].n = dpr_get_u32(p);
        av[i].p = (const char *)p + 4;
        p += 4 + av[i].n;
    }
    return (const char *)p;
}
