/*
 * fuzz_kv_resp.c - dpr-kv's RESP request parser (cachestore/src/kv_resp.c).
 *
 * The input is fed the way a socket delivers it: in pieces whose sizes come
 * from the input's first byte, re-parsing the growing buffer from the same
 * start (as the server does) and dropping each complete request. Checks:
 * no crash, no read outside the buffer (ASan), every argument lies inside
 * the buffer, and a consumed size never exceeds what was given. A complete
 * DPR.BATCH request goes one layer further, as kv_server.c's batch_start
 * takes it: its header argument is decoded (dpr_wire_decode_request), and
 * a header that decodes lies inside that argument. (What a decoded header
 * does to a worker: fuzz_kv_batch.c.)
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "dpr/wire.h"
#include "kv_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++;
    size--;

    kv_parser p;
    kv_parser_init(&p, 4096, 64);
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    size_t start = 0, have = 0;
    while (have < size) {
        size_t n = size - have < step ? size - have : step;
        memcpy(buf + have, data + have, n);
        have += n;
        for (;;) {
            size_t argc = 0;
            kv_arg *argv = NULL;
            const char *err = NULL;
            ssize_t r = kv_parse(&p, buf + start, have - start, &argc, &argv, &err);
            if (r < 0) {
                if (r == -EPROTO && !err)
                    abort(); /* an error always has Redis' text */
                goto out;    /* the server closes the connection */
            }
            if (r == 0)
                break;
            if ((size_t)r > have - start)
                abort();
            for (size_t i = 0; i < argc; i++) {
                const char *a = argv[i].p;
                if (argv[i].n > 0 && (a < buf + start || a + argv[i].n > buf + start + (size_t)r))
                    abort();
            }
            if (argc == 2 && argv[0].n == 9 && strncasecmp(argv[0].p, "DPR.BATCH", 9) == 0) {
                dpr_request_hdr h;
                ssize_t got = dpr_wire_decode_request((const uint8_t *)argv[1].p, argv[1].n,
                                                      &h, NULL);
                if (got > 0 && ((size_t)got > argv[1].n || h.op_count == 0 ||
                              (h.dep_count && (h.deps < (const uint8_t *)argv[1].p ||
                                               h.deps + (size_t)h.dep_count * 16 >
                                                   (const uint8_t *)argv[1].p + argv[1].n))))
                    abort();
            }
            start += (size_t)r;
        }
    }
out:
    kv_parser_free(&p);
    free(buf);
    return 0;
}
