/*
 * unicast.h - private to libdpr-discover: unicast DNS-SD (RFC 6763) with
 * glibc's resolver (libresolv): for each service type, PTR <type>.<domain>,
 * then SRV and TXT of each instance one label below it, then A and AAAA of
 * the SRV target (each host asked once). Queries go to one nameserver
 * ("IP[:PORT]") or to the system's resolver (/etc/resolv.conf), over UDP
 * (TCP when an answer is truncated), all within one deadline.
 */
#ifndef DPR_DISCOVER_UNICAST_H
#define DPR_DISCOVER_UNICAST_H

#include <stddef.h>

#include "dnsrec.h"

/*
 * Appends every instance found to out (unfiltered: other clusters and TXT
 * formats too; an instance without SRV is left out). domain is checked
 * (dpr_dnsrec_check_domain), without a final dot. Errors, with a message
 * naming the domain, the server and the question:
 *   -ETIMEDOUT    no answer within timeout_ms, or nothing listens there
 *   -EREMOTEIO    the server answered with an error (REFUSED, SERVFAIL, ...)
 *   -EPROTO       an answer that does not parse
 *   -EINVAL       a bad nameserver; -EIO: no resolver configured
 */
int dpr_unicast_browse(const char *const *types, size_t ntypes, const char *domain,
                       const char *nameserver, int timeout_ms, dpr_dnsrec_list *out,
                       dpr_err *err);

#endif
