/* unicast.c - see unicast.h. */
#include "unicast.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"

#define ANSWER_MAX 65536
#define NAME_TEXT_MAX 1100 /* 255 bytes of labels, each may become \DDD */

typedef struct host_addrs {
    char *host;
    char **addrs;
    size_t n;
} host_addrs;

typedef struct uni {
    struct __res_state st;
    const char *domain;
    char server[64];   /* for messages: "127.0.0.1:5353", "of the system's resolver" */
    int timeout_ms;
    uint64_t deadline;
    uint8_t *ans;
    host_addrs *hosts; /* every host asked, once */
    size_t nhosts;
} uni;

static const char *type_name(uint16_t t)
{
    switch (t) {
    case ns_t_ptr:
        return "PTR";
    case ns_t_srv:
        return "SRV";
    case ns_t_txt:
        return "TXT";
    case ns_t_a:
        return "A";
    default:
        return "AAAA";
    }
}

/* One question to the server: the records of qtype owned by name (text,
 * absolute). NXDOMAIN and no data are no records. */
static int query(uni *u, const char *name, uint16_t qtype, dpr_dnsrec_rr **out, size_t *n,
                 dpr_err *err)
{
    uint8_t q[NS_PACKETSZ], qwire[DPR_DNSREC_NAME_MAX];
    int left = dpr_ms_left(u->deadline), qlen, alen, rcode, r;
    dpr_err why = DPR_ERR_INIT;

    *out = NULL;
    *n = 0;
    if (left == 0)
        return dpr_err_set(err, -ETIMEDOUT, "unicast DNS-SD in domain '%s': the DNS server %s "
                           "did not answer everything within %gs (next: %s %s)", u->domain,
                           u->server, u->timeout_ms / 1000.0, name, type_name(qtype));
    if (dpr_dnsrec_name_wire(name, qwire, sizeof(qwire)) < 0)
        return dpr_err_set(err, -EINVAL, "unicast DNS-SD in domain '%s': cannot ask for "
                           "'%.100s' (not a DNS name)", u->domain, name);
    /* whole seconds, the resolver's unit; one try (the deadline is ours) */
    u->st.retrans = (left + 999) / 1000;
    u->st.retry = 1;
    qlen = res_nmkquery(&u->st, ns_o_query, name, ns_c_in, qtype, NULL, 0, NULL, q, sizeof(q));
    if (qlen < 0)
        return dpr_err_set(err, -EINVAL, "unicast DNS-SD in domain '%s': cannot ask for "
                           "'%.100s' (name too long)", u->domain, name);
    errno = 0;
    alen = res_nsend(&u->st, q, qlen, u->ans, ANSWER_MAX);
    if (alen < 0) {
        if (errno == ECONNREFUSED)
            return dpr_err_set(err, -ETIMEDOUT, "unicast DNS-SD in domain '%s': the DNS server "
                               "%s did not answer %s %s: connection refused (is a DNS server "
                               "listening there?)", u->domain, u->server, name,
                               type_name(qtype));
        return dpr_err_set(err, -ETIMEDOUT, "unicast DNS-SD in domain '%s': the DNS server %s "
                           "did not answer %s %s within %gs", u->domain, u->server, name,
                           type_name(qtype), u->timeout_ms / 1000.0);
    }
    r = dpr_dnsrec_answers(u->ans, (size_t)alen, qtype, qwire, &rcode, out, n, &why);
    if (r == -ENOMEM)
        return dpr_err_set(err, r, "out of memory");
    if (r < 0)
        return dpr_err_set(err, -EPROTO, "unicast DNS-SD in domain '%s': the DNS server %s "
                           "answered %s %s with %s", u->domain, u->server, name,
                           type_name(qtype), why.msg);
    if (rcode == ns_r_noerror)
        return 0;
    free(*out);
    *out = NULL;
    *n = 0;
    if (rcode == ns_r_nxdomain)
        return 0;
    return dpr_err_set(err, -EREMOTEIO, "unicast DNS-SD in domain '%s': the DNS server %s "
                       "failed on %s %s: %s", u->domain, u->server, name, type_name(qtype),
                       dpr_dnsrec_rcode_name(rcode));
}

/* The addresses of host (text, absolute), A then AAAA, asked once. */
static int host_lookup(uni *u, const char *host, const host_addrs **out, dpr_err *err)
{
    static const uint16_t types[2] = {ns_t_a, ns_t_aaaa};
    host_addrs *h, *v;

    for (size_t i = 0; i < u->nhosts; i++)
        if (strcmp(u->hosts[i].host, host) == 0) {
            *out = &u->hosts[i];
            return 0;
        }
    v = realloc(u->hosts, (u->nhosts + 1) * sizeof(*v));
    if (!v)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    u->hosts = v;
    h = &u->hosts[u->nhosts];
    memset(h, 0, sizeof(*h));
    if (!(h->host = strdup(host)))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    u->nhosts++;
    for (int t = 0; t < 2; t++) {
        dpr_dnsrec_rr *rr;
        size_t n;
        int r = query(u, host, types[t], &rr, &n, err);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++) {
            char **a = realloc(h->addrs, (h->n + 1) * sizeof(*a));
            if (a)
                h->addrs = a;
            if (!a || !(h->addrs[h->n] = strdup(rr[i].addr))) {
                free(rr);
                return dpr_err_set(err, -ENOMEM, "out of memory");
            }
            h->n++;
        }
        free(rr);
    }
    *out = h;
    return 0;
}

/* One instance (target: its name, wire form; label: its instance name). */
static int browse_instance(uni *u, const char *type, const uint8_t *target, const char *label,
                           dpr_dnsrec_list *out, dpr_err *err)
{
    char inst[NAME_TEXT_MAX + 2], host[NAME_TEXT_MAX + 2];
    dpr_dnsrec_rr *rr = NULL;
    dpr_dnsrec_svc *s = NULL;
    const dpr_dnsrec_rr *best = NULL;
    const host_addrs *ha = NULL;
    uint8_t best_target[DPR_DNSREC_NAME_MAX];
    uint16_t port;
    size_t n;
    int r;

    if (dpr_dnsrec_name_text(target, inst, NAME_TEXT_MAX) < 0)
        return 0;
    strcat(inst, ".");
    r = query(u, inst, ns_t_srv, &rr, &n, err);
    if (r < 0 || n == 0)
        goto out; /* an instance without SRV is left out */
    for (size_t i = 0; i < n; i++)
        if (!best || rr[i].priority < best->priority ||
            (rr[i].priority == best->priority && rr[i].weight > best->weight))
            best = &rr[i];
    memcpy(best_target, best->target, sizeof(best_target));
    port = best->port;
    free(rr);
    rr = NULL;
    if (dpr_dnsrec_name_text(best_target, host, NAME_TEXT_MAX) < 0)
        goto out;
    r = dpr_dnsrec_svc_new(out, type, label, u->domain, &s);
    if (r == 0)
        r = dpr_dnsrec_set_target(s, dpr_dnsrec_name_is_root(best_target) ? "" : host, port);
    if (r < 0) {
        r = dpr_err_set(err, r, "out of memory");
        goto out;
    }
    r = query(u, inst, ns_t_txt, &rr, &n, err);
    if (r < 0)
        goto out;
    /* the first TXT record (its RDATA points into the answer: used now) */
    if (n > 0 && dpr_dnsrec_txt_rdata(s, rr[0].rdata, rr[0].rdlen) < 0) {
        r = dpr_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (!dpr_dnsrec_name_is_root(best_target)) {
        strcat(host, ".");
        r = host_lookup(u, host, &ha, err);
        if (r < 0)
            goto out;
        for (size_t i = 0; i < ha->n; i++)
            if (dpr_dnsrec_add_address(s, ha->addrs[i]) < 0) {
                r = dpr_err_set(err, -ENOMEM, "out of memory");
                goto out;
            }
    }
    r = 0;
out:
    if (s)
        dpr_dnsrec_svc_finish(s);
    free(rr);
    return r;
}

static int browse_type(uni *u, const char *type, dpr_dnsrec_list *out, dpr_err *err)
{
    char ptr[DPR_DNSREC_NAME_MAX + 64], label[DPR_DNSREC_LABEL_MAX + 1];
    uint8_t owner[DPR_DNSREC_NAME_MAX];
    dpr_dnsrec_rr *rr;
    size_t n;
    int r;

    snprintf(ptr, sizeof(ptr), "%s.%s.", type, u->domain);
    if (dpr_dnsrec_name_wire(ptr, owner, sizeof(owner)) < 0)
        return dpr_err_set(err, -EINVAL, "domain '%s' is too long", u->domain);
    r = query(u, ptr, ns_t_ptr, &rr, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; r == 0 && i < n; i++) {
        /* an instance of this type: one label below it */
        if (dpr_dnsrec_instance_label(rr[i].target, owner, label, sizeof(label)) < 0 ||
            dpr_dnsrec_find(out, type, label))
            continue;
        r = browse_instance(u, type, rr[i].target, label, out, err);
    }
    free(rr);
    return r;
}

int dpr_unicast_browse(const char *const *types, size_t ntypes, const char *domain,
                       const char *nameserver, int timeout_ms, dpr_dnsrec_list *out,
                       dpr_err *err)
{
    uni u;
    int r = 0;

    memset(&u, 0, sizeof(u));
    u.domain = domain;
    u.timeout_ms = timeout_ms;
    u.deadline = dpr_deadline_ms(timeout_ms);
    snprintf(u.server, sizeof(u.server), "%s", nameserver ? nameserver
                                                           : "of the system's resolver");
    if (res_ninit(&u.st) < 0)
        return dpr_err_set(err, -EIO, "no DNS resolver configured (/etc/resolv.conf): give a "
                           "nameserver");
    if (nameserver) {
        struct sockaddr_storage ss;
        socklen_t len;
        r = dpr_dnsrec_parse_nameserver(nameserver, &ss, &len, err);
        if (r < 0)
            goto out;
        if (ss.ss_family == AF_INET) {
            memcpy(&u.st.nsaddr_list[0], &ss, sizeof(struct sockaddr_in));
        } else {
            /* glibc takes an IPv6 server from _u._ext.nsaddrs (freed by
             * res_nclose) when nsaddr_list's entry has no family */
            struct sockaddr_in6 *a6 = malloc(sizeof(*a6));
            if (!a6) {
                r = dpr_err_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            memcpy(a6, &ss, sizeof(*a6));
            free(u.st._u._ext.nsaddrs[0]);
            u.st._u._ext.nsaddrs[0] = a6;
            memset(&u.st.nsaddr_list[0], 0, sizeof(u.st.nsaddr_list[0]));
        }
        u.st.nscount = 1;
    }
    /* names are absolute: no search list */
    u.st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
    /* (a flag of dig's) an error answer (REFUSED, SERVFAIL) is handed back
     * instead of being taken as no answer, so that messages name it */
    u.st.pfcode = RES_PRF_REPLY;
    u.ans = malloc(ANSWER_MAX);
    if (!u.ans) {
        r = dpr_err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; r == 0 && i < ntypes; i++)
        r = browse_type(&u, types[i], out, err);
out:
    for (size_t i = 0; i < u.nhosts; i++) {
        for (size_t k = 0; k < u.hosts[i].n; k++)
            free(u.hosts[i].addrs[k]);
        free(u.hosts[i].addrs);
        free(u.hosts[i].host);
    }
    free(u.hosts);
    free(u.ans);
    res_nclose(&u.st);
    return r;
}
