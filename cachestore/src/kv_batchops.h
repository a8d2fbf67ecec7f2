/*
 * kv_batchops.h - the stored form of a DPR batch's operations, as dpr-kv
 * (kv_server.c) and dpr-redis (cachestore/redis/rp_proxy.c) keep them while
 * the batch arrives and run or check them once it is whole:
 *
 *     per operation: u32 argc, then argc times (u32 length, the bytes)
 *
 * little-endian (dpr/wire.h's helpers). Pure: the writer appends to a dpr_buf,
 * the reader walks a buffer this writer made (it checks nothing).
 */
#ifndef KV_BATCHOPS_H
#define KV_BATCHOPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "kv_resp.h"

/* Bytes kv_batchops_put appends for argv. */
size_t kv_batchops_size(size_t argc, const kv_arg *argv);
/* Appends one operation (out of memory: b->failed, as dpr_buf_append). */
void kv_batchops_put(dpr_buf *b, size_t argc, const kv_arg *argv);
/* The argument count of the operation at op. */
uint32_t kv_batchops_argc(const char *op);
/* Its arguments into av (kv_batchops_argc(op) entries; they point into
 * op's buffer); returns the next operation. */
const char *kv_batchops_args(const char *op, kv_arg *av);

#endif
