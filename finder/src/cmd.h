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
 *   DPR.REPORT <domain> <world-line> <worker> <version>
 *              [<dep-worker> <dep-version>]...  -> +OK
 *     (dependencies name workers of the same domain)
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
#define DPR_CMD_DENIED 0x4u /* refused for want of the owner's token: the reply (an
                               error that never shows a token) is worth a log line */

/* Most arguments a request may have: DPR.REPORT with one dependency on
 * each of 65,536 workers. */
#define DPR_CMD_MAX_ARGS (5 + 2 * 65536)

/*
 * Executes argv[0..argc) (argc >= 1). Returns 0 with the reply appended
 * to out (errors are RESP error replies), or -ENOMEM with out unchanged
 * (its failure flag clear again, as it must be on entry).
 */
int dpr_cmd_execute(dpr_domains *ds, int argc, char *const *argv, const size_t *argvlen,
                    dpr_buf *out, unsigned *flags);

/* Appends "-<msg>\r\n", with CR/LF in msg replaced by spaces. */
int dpr_cmd_error(dpr_buf *out, const char *msg);

#endif
