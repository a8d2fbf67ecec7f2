/* rp_reply.c - see rp_reply.h. */
#include "rp_reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The line at buf[pos..]: *end gets the offset of its '\r'. 0 incomplete, 1 ok. */
static int line_end(const char *buf, size_t len, size_t pos, size_t *end)
{
    const char *cr = memchr(buf + pos, '\r', len - pos);
    if (!cr || (size_t)(cr - buf) + 1 >= len)
        return 0;
    if (cr[1] != '\n')
        return -EPROTO;
    *end = (size_t)(cr - buf);
    return 1;
}

/* A decimal number (with an optional '-') in buf[from..to). */
static int parse_num(const char *buf, size_t from, size_t to, int64_t *out)
{
    int64_t v = 0;
    bool neg = false;

    if (from < to && buf[from] == '-') {
        neg = true;
        from++;
    }
    if (from == to || to - from > 18)
        return -EPROTO;
    for (size_t i = from; i < to; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -EPROTO;
        v = v * 10 + (buf[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

ssize_t rp_reply_len(const char *buf, size_t len)
{
    size_t pos = 0, end;
    int64_t need = 1; /* elements still to read */

    while (need > 0) {
        int64_t n;
        int r;

        if (pos >= len)
            return 0;
        r = line_end(buf, len, pos, &end);
        if (r <= 0)
            return r;
        switch (buf[pos]) {
        case '+':
        case '-':
            break;
        case ':':
            if (parse_num(buf, pos + 1, end, &n) < 0)
                return -EPROTO;
            break;
        case '$':
            if (parse_num(buf, pos + 1, end, &n) < 0 || n < -1)
                return -EPROTO;
            if (n >= 0) {
                size_t data = end + 2;
                if (len - data < (size_t)n + 2)
                    return 0;
                if (buf[data + n] != '\r' || buf[data + n + 1] != '\n')
                    return -EPROTO;
                end = data + (size_t)n;
            }
            break;
        case '*':
            if (parse_num(buf, pos + 1, end, &n) < 0 || n < -1 || n > RP_REPLY_MAX_ELEMENTS)
                return -EPROTO;
            if (n > 0)
                need += n;
            break;
        default:
            return -EPROTO;
        }
        need--;
        pos = end + 2;
    }
    return (ssize_t)pos;
}
