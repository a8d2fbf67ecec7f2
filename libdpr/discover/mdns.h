/*
 * mdns.h - private to libdpr-discover: multicast DNS-SD in the domain
 * "local" through the host's avahi-daemon (avahi-client on its
 * AvahiSimplePoll, in the calling thread: the call blocks).
 *
 * One service browser per type; every instance announced is resolved once
 * (SRV target and port, TXT, an address; more addresses as other
 * interfaces and protocols announce it) while browsing goes on. The browse
 * ends at timeout_ms or, once something was found, when no new instance
 * arrived for DPR_MDNS_SETTLE_MS but not before DPR_MDNS_MIN_MS (a
 * responder does not repeat a record within a second: the daemon's second
 * query, about a second in, gets what a first one missed); resolutions
 * still running then get up to DPR_MDNS_RESOLVE_MS more. An instance that
 * did not resolve is left out.
 */
#ifndef DPR_DISCOVER_MDNS_H
#define DPR_DISCOVER_MDNS_H

#include <stddef.h>

#include "dnsrec.h"

#define DPR_MDNS_SETTLE_MS 1000
#define DPR_MDNS_MIN_MS 1500
#define DPR_MDNS_RESOLVE_MS 1000

/*
 * Appends every instance found to out (unfiltered). -ECONNREFUSED when
 * avahi-daemon (or the D-Bus system bus) cannot be reached, -EIO when the
 * daemon fails the browse, -ENOMEM; with a message.
 */
int dpr_mdns_browse(const char *const *types, size_t ntypes, int timeout_ms,
                    dpr_dnsrec_list *out, dpr_err *err);

#endif
