/*
 * fuzz_kv_layout.c - dpr-kv's layout file reader (cachestore/src/kv_layout.c).
 *
 * When the input's first byte is odd, the input (without it) gets a valid
 * checksum entry appended, so the fuzzer reaches the field checks. Checks:
 * no crash, no out-of-bounds read, no leak; a decoded state encodes to an
 * image that decodes to the same state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kv_layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kv_layout_state st, again;
    dpr_buf in = DPR_BUF_INIT, out = DPR_BUF_INIT;
    dpr_err err;
    char crc[9];

    if (size < 1 || size > 1 << 16)
        return 0;
    if (dpr_buf_append(&in, data + 1, size - 1) < 0)
        abort();
    if (data[0] & 1) {
        snprintf(crc, sizeof(crc), "%08lx", crc32(0L, (const Bytef *)in.data, (uInt)in.len));
        if (dpr_buf_append_str(&in, "*2\r\n$5\r\ncrc32\r\n$8\r\n") < 0 ||
            dpr_buf_append(&in, crc, 8) < 0 || dpr_buf_append(&in, "\r\n", 2) < 0)
            abort();
    }
    if (kv_layout_decode(in.data, in.len, &st, &err) == 0) {
        if (kv_layout_encode(&st, &out) < 0 || kv_layout_decode(out.data, out.len, &again,
                                                                &err) < 0)
            abort();
        if (!kv_layout_equal(&st.active, &again.active) ||
            !kv_layout_equal(&st.pending, &again.pending))
            abort();
        kv_layout_state_free(&again);
    } else if (!err.msg[0]) {
        abort();
    }
    kv_layout_state_free(&st);
    dpr_buf_free(&in);
    dpr_buf_free(&out);
    return 0;
}
