/*
 * common/err.h - filling a dpr_err (the type and the convention are in
 * dpr/err.h, libdpr's public header).
 *
 *     if (port > 65535)
 *         return dpr_err_set(err, -ERANGE, "port %lu out of range 1..65535", port);
 *
 * dpr_err_set returns its code, so setting and returning is one statement.
 * Messages say what and where ("agent.conf:12: node.name: missing"), in
 * lower case, without a trailing period; the caller may add context in front
 * with dpr_err_prefix ("loading /var/lib/dpr/agent.json: ...").
 */
#ifndef COMMON_ERR_H
#define COMMON_ERR_H

#include "dpr/err.h"

/* Sets err (if not NULL) to code and the formatted message; returns code. */
int dpr_err_set(dpr_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Puts "prefix: " (formatted) in front of err's message; keeps its code. */
void dpr_err_prefix(dpr_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears err (code 0, empty message). */
void dpr_err_clear(dpr_err *err);
/* err's message, or strerror of code when err has none (never NULL). */
const char *dpr_err_str(const dpr_err *err, int code);

#endif
