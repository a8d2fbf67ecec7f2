/*
 * fuzz_common_finders.c - a finder address list and the finder's error answers
 * (common/finders.h) on arbitrary bytes: the first line as a list, the
 * rest as error texts one after another. Nothing may crash, and the
 * target is always an address of the list or the leader last named.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/finders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size, *nl = memchr(p, '\n', size);
    char list[512];
    size_t n = nl ? (size_t)(nl - p) : size;
    dpr_finders f;

    if (n >= sizeof(list))
        return 0;
    memcpy(list, p, n);
    list[n] = '\0';
    if (dpr_finders_parse(list, &f, NULL) < 0) {
        /* a list with a NUL inside is refused or cut: either is fine */
        return 0;
    }
    if (f.n < 1 || f.n > DPR_FINDERS_MAX)
        abort();
    p = nl ? nl + 1 : end;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t k = e ? (size_t)(e - p) : (size_t)(end - p);
        dpr_finders_answer a = dpr_finders_on_error(&f, p, k);
        if (a == DPR_FINDERS_MOVED && !f.redirected)
            abort();
        if (f.cur >= f.n || f.hops > DPR_FINDERS_MAX_HOPS ||
            strlen(dpr_finders_text(&f)) >= sizeof(f.text))
            abort();
        if (k % 3 == 0)
            dpr_finders_next(&f);
        p = e ? e + 1 : end;
    }
    return 0;
}
