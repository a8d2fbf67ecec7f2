/*
 * dnsrec.h - private to libdpr-discover: DNS-SD records, pure (no I/O).
 *
 * What both back ends (mdns.c: avahi-client; unicast.c: glibc's resolver)
 * fill and discover.c filters: a list of service instances (type, instance
 * name, SRV target and port, the target's addresses, the TXT record as
 * keys and values), and the parsers behind them:
 *
 *   - TXT strings "key=value" (RFC 6763 6.3-6.5): keys are case-insensitive
 *     (kept in lower case), the first occurrence of a key counts, a string
 *     without '=' is a key with the value "", empty strings and strings
 *     starting with '=' are ignored;
 *   - DNS answers (wire format, RFC 1035): the records of one type owned by
 *     the name asked, PTR / SRV targets, TXT strings, A / AAAA addresses;
 *     an instance name is the first label of a PTR target one label below
 *     "<type>.<domain>";
 *   - browse domains, nameserver addresses ("IP", "IP:PORT",
 *     "[IPv6]:PORT"), what a client keeps (txtvers=1 and cluster=, exactly as
 *     python-dpr's dpr.discover), and the message when no agent of a cluster
 *     was found, naming what was seen instead.
 *
 * Functions return 0 (or a count) or a negative errno, with a message in
 * err where one helps.
 */
#ifndef DPR_DISCOVER_DNSREC_H
#define DPR_DISCOVER_DNSREC_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dpr/discover.h"
#include "dpr/err.h"

#define DPR_DNSREC_TXTVERS "1"
#define DPR_DNSREC_LABEL_MAX 63
#define DPR_DNSREC_NAME_MAX 255 /* a name in wire form, with its root label */

/* One service instance as a back end found it. */
typedef struct dpr_dnsrec_svc {
    dpr_service pub; /* what users see: points into the fields below
                      * (dpr_dnsrec_svc_finish) */
    char *type, *name, *domain, *host;
    uint16_t port;
    bool resolved;   /* SRV known */
    char **addrs;
    size_t naddrs;
    char **keys, **vals;
    size_t ntxt;
} dpr_dnsrec_svc;

typedef struct dpr_dnsrec_list {
    dpr_dnsrec_svc **v;
    size_t n, cap;
} dpr_dnsrec_list;

/* ---- services ----------------------------------------------------------------- */

/* Appends a new instance (copies of the strings; no target, no TXT yet). */
int dpr_dnsrec_svc_new(dpr_dnsrec_list *l, const char *type, const char *name,
                       const char *domain, dpr_dnsrec_svc **out);
/* Appends s to l (which owns it from then on). -ENOMEM (s not taken). */
int dpr_dnsrec_list_add(dpr_dnsrec_list *l, dpr_dnsrec_svc *s);
/* The instance of type and name in l, or NULL. */
dpr_dnsrec_svc *dpr_dnsrec_find(const dpr_dnsrec_list *l, const char *type, const char *name);
/* Removes and frees l->v[i] (order kept). */
void dpr_dnsrec_remove(dpr_dnsrec_list *l, size_t i);
int dpr_dnsrec_set_target(dpr_dnsrec_svc *s, const char *host, uint16_t port);
/* Adds an address (text) unless it is there already. */
int dpr_dnsrec_add_address(dpr_dnsrec_svc *s, const char *addr);
/* One TXT string of n bytes (no length byte). */
int dpr_dnsrec_txt_add(dpr_dnsrec_svc *s, const uint8_t *str, size_t n);
/* A TXT record's RDATA: length-prefixed strings; a length running past the
 * end keeps what is there. */
int dpr_dnsrec_txt_rdata(dpr_dnsrec_svc *s, const uint8_t *rdata, size_t n);
/* The value of TXT key (lower case), or NULL. */
const char *dpr_dnsrec_txt_get(const dpr_dnsrec_svc *s, const char *key);
/* Points s->pub at the fields (after the last change). */
void dpr_dnsrec_svc_finish(dpr_dnsrec_svc *s);
void dpr_dnsrec_list_free(dpr_dnsrec_list *l);

/* Has the record the TXT format this client reads (txtvers=1)? */
bool dpr_dnsrec_supported(const dpr_dnsrec_svc *s);
/* Is it a record of cluster (any cluster for NULL) in a supported format? */
bool dpr_dnsrec_keep(const dpr_dnsrec_svc *s, const char *cluster);
/* Sorts the records like python-dpr does: agents by node, finders by term
 * (highest first), instances by deployment and shard; then by name. */
void dpr_dnsrec_sort(dpr_dnsrec_svc **v, size_t n);
/* "HOST:PORT" to connect to: addr=, else finder=, else the first address
 * (else the host) with the SRV port. 0, -ENOENT (none), -ENAMETOOLONG. */
int dpr_dnsrec_endpoint(const dpr_dnsrec_svc *s, char *buf, size_t cap);

/* ---- arguments ---------------------------------------------------------------- */

/* A browse domain: "local" or a DNS name of labels of letters, digits, '-'
 * and '_' (at most 63 each, 253 in all), an optional final dot. *out gets
 * it without the dot. -EINVAL with a message. */
int dpr_dnsrec_check_domain(const char *domain, char *out, size_t cap, dpr_err *err);
bool dpr_dnsrec_is_mdns(const char *domain);
/* "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address: the server's
 * address (port 53 by default). -EINVAL with a message (a host name is not
 * an IP address: the server is asked for names, it cannot be one). */
int dpr_dnsrec_parse_nameserver(const char *text, struct sockaddr_storage *out,
                                socklen_t *outlen, dpr_err *err);
/* Is type "_name._tcp" / "_name._udp" (as service types are written)? */
bool dpr_dnsrec_valid_type(const char *type);

/* ---- DNS answers ----------------------------------------------------------------- */

/* One answer record of the type asked. */
typedef struct dpr_dnsrec_rr {
    uint16_t type;                            /* ns_t_ptr, ns_t_srv, ... */
    uint8_t target[DPR_DNSREC_NAME_MAX];      /* PTR, SRV: the name, wire form */
    uint16_t priority, weight, port;          /* SRV */
    const uint8_t *rdata;                     /* TXT: into the message */
    size_t rdlen;
    char addr[46];                            /* A, AAAA: text (INET6_ADDRSTRLEN) */
} dpr_dnsrec_rr;

/* Text (presentation form, no final dot, special characters escaped as
 * master files want them) of a wire-form name into out; "." for the root.
 * -EINVAL for a malformed name, -ENAMETOOLONG. */
int dpr_dnsrec_name_text(const uint8_t *wire, char *out, size_t cap);
/* Wire form of a text name (escapes as above); -EINVAL. */
int dpr_dnsrec_name_wire(const char *text, uint8_t *wire, size_t cap);
/* Wire form of the root name? */
bool dpr_dnsrec_name_is_root(const uint8_t *wire);

/*
 * The answer records of qtype owned by qname (wire form) in the DNS message
 * msg (len bytes): *rcode gets the response code, *out (free it) the
 * records, *n their count. A message that does not parse, is not a
 * response, or has a record of qtype whose RDATA is malformed: -EPROTO
 * with a message. Records of other types (a CNAME) and owners are skipped.
 */
int dpr_dnsrec_answers(const uint8_t *msg, size_t len, uint16_t qtype, const uint8_t *qname,
                       int *rcode, dpr_dnsrec_rr **out, size_t *n, dpr_err *err);
/* The instance name of a PTR target one label below the PTR's owner (both
 * wire form): 0 with the label's bytes and a NUL in out; -ENOENT when the
 * target is not there, -EINVAL for a label with a NUL byte. */
int dpr_dnsrec_instance_label(const uint8_t *target, const uint8_t *owner, char *out,
                              size_t cap);
/* NOERROR, NXDOMAIN, REFUSED, ... or "RCODE n". */
const char *dpr_dnsrec_rcode_name(int rcode);

/* ---- messages ------------------------------------------------------------------------ */

/* "domain 'local' (mDNS through avahi-daemon, 3s)" and the like. */
void dpr_dnsrec_describe_where(const char *domain, int timeout_ms, const char *nameserver,
                               char *out, size_t cap);
/* Why no agent of cluster was found, from every agent record seen
 * (records of other clusters, of another TXT format). */
void dpr_dnsrec_no_agents_message(const char *cluster, const char *domain, int timeout_ms,
                                  const char *nameserver, dpr_dnsrec_svc *const *seen,
                                  size_t nseen, dpr_err *err);

#endif
