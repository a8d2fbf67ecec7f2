/*
 * fuzz_kv_resp.c - dpr-kv's RESP request parser (cachestore/src/kv_resp.c).
 *
 * The input is fed the way a socket delivers it: in pieces whose sizes come
 * from the input's first byte, re-parsing the growing buffer from the same
 * start (as the server does) and dropping each complete request. Checks:
 * no crash, no read outside the buffer (ASan), every argument lies inside
 * the buffer, and a consumed size never exceeds what was given.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
            start += (size_t)r;
        }
    }
out:
    kv_parser_free(&p);
    free(buf);
    return 0;
}
