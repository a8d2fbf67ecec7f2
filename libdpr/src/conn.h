/*
 * conn.h - private to libdpr: one RESP connection over TCP.
 *
 * The socket is non-blocking once connected; replies are parsed by a hiredis
 * reader (redisReply objects, freed with freeReplyObject). Commands are
 * written into an output buffer (common/resp.h) whose room is reserved
 * first, so appending never fails once dpr_conn_reserve succeeded. Used by
 * the client sessions (many connections multiplexed with poll) and for
 * blocking request/reply exchanges with the finder and for INFO.
 *
 * TLS (docs/tls.md): connected with a context, the connection runs
 * common/tls.h's engine between the socket and the buffers: out holds
 * plaintext until dpr_conn_flush passes it through the engine into wire,
 * and dpr_conn_read feeds the reader the engine's plaintext (the handshake
 * is driven by the same calls: what it has to send goes out with the next
 * flush or read).
 *
 * All functions return 0 (or a count) or a negative errno; c->err holds a
 * message for the last failure.
 */
#ifndef DPR_CONN_H
#define DPR_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/resp.h" /* dpr_resp_command_size */
#include "common/tls.h"
#include "dpr/err.h"

typedef struct dpr_conn {
    int fd; /* -1: not connected */
    redisReader *reader;
    dpr_buf out; /* bytes [woff, out.len) are still to be written */
    size_t woff;
    dpr_tls_conn *tls; /* a TLS connection's engine (NULL: plain) */
    dpr_buf wire;      /* TLS: ciphertext to send, from wire_off on */
    size_t wire_off;
    dpr_err err;
} dpr_conn;

/* A closed connection (fd -1, no buffers). */
void dpr_conn_init(dpr_conn *c);
/* Connects (closing any previous socket), within timeout_ms (> 0); with tls
 * (NULL: plain) over TLS, the server's certificate checked against host. Drops any
 * unwritten output and buffered input. */
int dpr_conn_connect(dpr_conn *c, const char *host, uint16_t port, dpr_tls_ctx *tls,
                     int timeout_ms);
/* Closes the socket and drops buffered input and output (keeps memory). */
void dpr_conn_close(dpr_conn *c);
/* dpr_conn_close and frees everything. */
void dpr_conn_free(dpr_conn *c);

/* Makes room for commands of n bytes in all (the sum of their
 * dpr_resp_command_size), so that the dpr_conn_put_command calls for them
 * cannot fail (-ENOMEM). */
int dpr_conn_reserve(dpr_conn *c, size_t n);
/* Appends a command within the room reserved. argvlen NULL: strlen of each
 * argument. */
void dpr_conn_put_command(dpr_conn *c, int argc, const char *const *argv, const size_t *argvlen);
/* Writes as much output as the socket takes now; 0 (output may remain: see
 * dpr_conn_pending_output), or -errno when the connection failed. */
int dpr_conn_flush(dpr_conn *c);
size_t dpr_conn_pending_output(const dpr_conn *c);
/* After a failed write: drops the unwritten output and ends the write side
 * (shutdown), so that the peer ends its side too; what it sent before can
 * still be read. */
void dpr_conn_shutdown_write(dpr_conn *c);
/* Reads what the socket has now into the reader: bytes read (> 0), -EAGAIN
 * when nothing is there, -ECONNRESET at end of stream, other -errno. */
int dpr_conn_read(dpr_conn *c);
/* A complete reply from what was read: 1 and *out (the caller frees it), 0
 * when none is complete yet, -EPROTO when the stream is not valid RESP. */
int dpr_conn_next_reply(dpr_conn *c, redisReply **out);
/* One command (argc 1..8), one reply, blocking (poll) until timeout_ms:
 * -ETIMEDOUT. */
int dpr_conn_request(dpr_conn *c, int argc, const char *const *argv, const size_t *argvlen,
                     int timeout_ms, redisReply **out);

#endif
