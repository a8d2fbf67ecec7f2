/*
 * err.h - how every DPR function reports a failure.
 *
 * A function that can fail returns 0 (or a count) on success and a negative
 * errno value on failure: -EINVAL, -ENOMEM, -ETIMEDOUT ... When there is
 * more to say than the errno name (which file, which field, what was
 * expected), it also takes a `dpr_err *err` as its last argument and fills
 * it in; err may be NULL when the caller does not want the text.
 *
 *     dpr_err err;
 *     int r = dpr_client_new(&cfg, &client, &err);
 *     if (r < 0)
 *         fprintf(stderr, "cannot connect: %s\n", err.msg);
 *
 * A handle that lives long (a client, a session, a store) keeps a dpr_err
 * of its own for its last failure, read with the handle's *_errstr()
 * function; it is the same type, filled the same way.
 */
#ifndef DPR_ERR_H
#define DPR_ERR_H

#define DPR_ERR_MSG_MAX 256

typedef struct dpr_err {
    int code;                  /* the negative errno that was returned, or 0 */
    char msg[DPR_ERR_MSG_MAX]; /* what went wrong, one line, no trailing period */
} dpr_err;

#define DPR_ERR_INIT { 0, "" }

#endif
