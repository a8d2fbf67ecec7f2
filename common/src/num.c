/* num.c - see common/num.h. */
#include "common/num.h"

#include <errno.h>
#include <string.h>

size_t dpr_fmt_u64(char *p, uint64_t v)
{
    char tmp[DPR_FMT_U64_MAX];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t dpr_fmt_i64(char *p, int64_t v)
{
    if (v < 0) {
        p[0] = '-';
        return 1 + dpr_fmt_u64(p + 1, (uint64_t)0 - (uint64_t)v);
    }
    return dpr_fmt_u64(p, (uint64_t)v);
}

/* Digits only, no leading zero; 0, -EINVAL, or -ERANGE above UINT64_MAX.
 * dpr-kv parses every request's lengths with it: up to 19 digits cannot
 * overflow, so those take one pass without overflow checks. */
static inline int digits_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || (s[0] == '0' && n > 1))
        return -EINVAL;
    if (n <= 19) {
        for (size_t i = 0; i < n; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9)
                return -EINVAL;
            v = v * 10 + d;
        }
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int dpr_parse_u64(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    int r = digits_u64(s, n, &v);

    if (r < 0)
        return r;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int dpr_parse_i64(const char *s, size_t n, int64_t *out)
{
    int neg = n > 0 && s[0] == '-';
    uint64_t v;
    int r;

    if (neg && n > 1 && s[1] == '0')
        return -EINVAL; /* "-0" and "-01" */
    r = digits_u64(s + neg, n - (size_t)neg, &v);
    if (r < 0)
        return r;
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -ERANGE;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -ERANGE;
        *out = (int64_t)v;
    }
    return 0;
}

int dpr_parse_u64_str(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s)
        return -EINVAL;
    return dpr_parse_u64(s, strlen(s), min, max, out);
}
