/*
 * common/num.h - decimal numbers to and from text, without locale or errno.
 *
 * Parsers take a length (network input is not NUL-terminated) and accept
 * exactly: digits only for unsigned values ('-' first for signed ones), no
 * spaces, no '+', no leading zeros (so every number has one spelling, as in
 * Redis' string2ll). They return 0, -EINVAL for text that is not a number,
 * -ERANGE for one outside the bounds.
 */
#ifndef COMMON_NUM_H
#define COMMON_NUM_H

#include <stddef.h>
#include <stdint.h>

/* Room for any formatted 64-bit value, sign included (no NUL). */
#define DPR_FMT_U64_MAX 20
#define DPR_FMT_I64_MAX 20

/* Writes v in decimal at p (no NUL); returns the length. */
size_t dpr_fmt_u64(char *p, uint64_t v);
size_t dpr_fmt_i64(char *p, int64_t v);

/* Unsigned, in [min, max]. */
int dpr_parse_u64(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out);
/* Signed, within int64_t (Redis' string2ll rules). */
int dpr_parse_i64(const char *s, size_t n, int64_t *out);
/* NUL-terminated text, unsigned, in [min, max] (flags and config values). */
int dpr_parse_u64_str(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
