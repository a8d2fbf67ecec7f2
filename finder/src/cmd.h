/*
 * cmd.h - the finder's RESP commands, without any I/O.
 *
 * dpr_cmd_execute() runs one parsed request against the finder's domains
 * (dpr/domains.h) and appends the RESP reply to out. Commands (names
 * case-insensitive, numbers as decimal text in 0..INT64_MAX; see
 * docs/protocol.md "Finder commands"). The domain is always the first
 * argument:
 *
 *   DPR.WORKER.ADD <domain> <worker> [<token>]
 *                                      -> *2 :world-line :version-to-restore
 *     (makes the domain when it does not exist yet)
 *   DPR.WORKER.REMOVE <domain> <worker> [<token>] -> +OK
 *     (a worker registered with a token needs the same token again)
 *   DPR.AUTH <domain> <worker> <token>  -> +OK
 *     (the worker is registered with this token: the connection now acts
 *     for its owner, see "Connections" below)
 *   DPR.REPORT <domain> <world-line> <worker> <version>
 *              [<dep-worker> <dep-version>]...  -> +OK
 *     (dependencies name workers of the same domain; a worker registered
 *     with a token reports only on a connection that holds its grant)
 *   DPR.SYNC <domain>                  -> *3 :world-line :max-version *2n
 *   DPR.PREFIX <domain> <world-line>   -> *2n (cut of an ended world-line)
 *   DPR.DOMAINS                        -> *n bulk names, sorted
 *   PING [msg], COMMAND ..., QUIT
 *
 * Every command but DPR.WORKER.ADD answers "-ERR unknown domain '<name>'"
 * for a domain that does not exist; all answer "-ERR invalid domain name"
 * for a name that dpr_domain_valid refuses (checked after the arity).
 *
 * Bad input never changes the finder.
 *
 * Connections. A connection's state (dpr_cmd_conn, made and freed with the
 * server's connection) holds its grants: (domain, worker, token) triples
 * taken by a successful DPR.AUTH, or by a DPR.WORKER.ADD with a token, at
 * most DPR_CMD_MAX_GRANTS. A DPR.REPORT of a worker whose record holds a
 * token is accepted only when the connection holds a grant for (domain,
 * worker) whose token is still the record's, checked at every report
 * (dpr_finder_token_check): the owner may give the record a new token at
 * any time (dpr_finder_set_token, when it moved the worker), and from then
 * on the old incarnation's reports get "-FENCED ...". Without a grant:
 * "-ERR worker <id> is registered by its owner: DPR.REPORT needs DPR.AUTH
 * with its token on this connection". Workers registered without a token
 * report on any connection. A NULL conn holds no grants.
 */
#ifndef DPR_FINDER_CMD_H
#define DPR_FINDER_CMD_H

#include <stddef.h>

#include "common/buf.h"
#include "dpr/domains.h"

/* Flags set by dpr_cmd_execute. */
#define DPR_CMD_WAIT 0x1u  /* the reply may depend on the working state: send it
                              only after that state is durable and published */
#define DPR_CMD_CLOSE 0x2u /* close the connection after sending the reply */
#define DPR_CMD_DENIED 0x4u /* refused for want of the owner's token (or fenced): the
                               reply (an error that never shows a token) is worth a
                               log line */

/* Grants (DPR.AUTH) one connection may hold. */
#define DPR_CMD_MAX_GRANTS 64

/* One connection's state: its grants. */
typedef struct dpr_cmd_conn dpr_cmd_conn;

/* A connection without grants (-ENOMEM); free with dpr_cmd_conn_free. */
int dpr_cmd_conn_new(dpr_cmd_conn **out);
/* Frees c (NULL is fine); the tokens it held are wiped first. */
void dpr_cmd_conn_free(dpr_cmd_conn *c);
/* How many grants c holds (0 for NULL). */
size_t dpr_cmd_conn_grants(const dpr_cmd_conn *c);

/* Most arguments a request may have: DPR.REPORT with one dependency on
 * each of 65,536 workers. */
#define DPR_CMD_MAX_ARGS (5 + 2 * 65536)

/*
 * Executes argv[0..argc) (argc >= 1) on behalf of connection conn (NULL:
 * one without grants). Returns 0 with the reply appended to out (errors
 * are RESP error replies), or -ENOMEM with out unchanged (its failure flag
 * clear again, as it must be on entry).
 */
int dpr_cmd_execute(dpr_domains *ds, dpr_cmd_conn *conn, int argc, char *const *argv,
                    const size_t *argvlen, dpr_buf *out, unsigned *flags);

/* Appends "-<msg>\r\n", with CR/LF in msg replaced by spaces. */
int dpr_cmd_error(dpr_buf *out, const char *msg);

/* An argument for a message: bytes outside 0x20..0x7e as '?', cut short
 * with "..." to fit dstlen (at least 4). */
void dpr_cmd_show_arg(char *dst, size_t dstlen, const char *s, size_t n);

#endif
