/* dnsrec.c - see dnsrec.h. */
#include "dnsrec.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/num.h"

/* ---- services ------------------------------------------------------------------ */

static void svc_free(dpr_dnsrec_svc *s)
{
    if (!s)
        return;
    free(s->type);
    free(s->name);
    free(s->domain);
    free(s->host);
    for (size_t i = 0; i < s->naddrs; i++)
        free(s->addrs[i]);
    free(s->addrs);
    for (size_t i = 0; i < s->ntxt; i++) {
        free(s->keys[i]);
        free(s->vals[i]);
    }
    free(s->keys);
    free(s->vals);
    free(s);
}

void dpr_dnsrec_list_free(dpr_dnsrec_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        svc_free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

void dpr_dnsrec_remove(dpr_dnsrec_list *l, size_t i)
{
    if (i >= l->n)
        return;
    svc_free(l->v[i]);
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(l->v[0]));
    l->n--;
}

int dpr_dnsrec_list_add(dpr_dnsrec_list *l, dpr_dnsrec_svc *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        dpr_dnsrec_svc **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

int dpr_dnsrec_svc_new(dpr_dnsrec_list *l, const char *type, const char *name,
                       const char *domain, dpr_dnsrec_svc **out)
{
    dpr_dnsrec_svc *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->type = strdup(type);
    s->name = strdup(name);
    s->domain = strdup(domain);
    s->host = strdup("");
    if (!s->type || !s->name || !s->domain || !s->host || dpr_dnsrec_list_add(l, s) < 0) {
        svc_free(s);
        return -ENOMEM;
    }
    dpr_dnsrec_svc_finish(s);
    if (out)
        *out = s;
    return 0;
}

dpr_dnsrec_svc *dpr_dnsrec_find(const dpr_dnsrec_list *l, const char *type, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i]->type, type) == 0 && strcmp(l->v[i]->name, name) == 0)
            return l->v[i];
    return NULL;
}

int dpr_dnsrec_set_target(dpr_dnsrec_svc *s, const char *host, uint16_t port)
{
    char *h = strdup(host);
    if (!h)
        return -ENOMEM;
    free(s->host);
    s->host = h;
    s->port = port;
    s->resolved = true;
    return 0;
}

int dpr_dnsrec_add_address(dpr_dnsrec_svc *s, const char *addr)
{
    char **v, *a;
    for (size_t i = 0; i < s->naddrs; i++)
        if (strcmp(s->addrs[i], addr) == 0)
            return 0;
    v = realloc(s->addrs, (s->naddrs + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    s->addrs = v;
    if (!(a = strdup(addr)))
        return -ENOMEM;
    s->addrs[s->naddrs++] = a;
    return 0;
}

const char *dpr_dnsrec_txt_get(const dpr_dnsrec_svc *s, const char *key)
{
    for (size_t i = 0; i < s->ntxt; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->vals[i];
    return NULL;
}

int dpr_dnsrec_txt_add(dpr_dnsrec_svc *s, const uint8_t *str, size_t n)
{
    const uint8_t *eq = memchr(str, '=', n);
    size_t klen = eq ? (size_t)(eq - str) : n;
    char *key, *val, **kv, **vv;

    if (klen == 0)
        return 0; /* empty, or no key */
    key = malloc(klen + 1);
    if (!key)
        return -ENOMEM;
    for (size_t i = 0; i < klen; i++) {
        /* keys are printable US-ASCII (RFC 6763 6.4); lowered here */
        uint8_t c = str[i];
        key[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a')
                                      : (c < 0x20 || c >= 0x7f ? '?' : (char)c);
    }
    key[klen] = '\0';
    if (dpr_dnsrec_txt_get(s, key)) {
        free(key);
        return 0; /* the first occurrence counts */
    }
    size_t vlen = eq ? n - klen - 1 : 0;
    val = malloc(vlen + 1);
    if (!val) {
        free(key);
        return -ENOMEM;
    }
    for (size_t i = 0; i < vlen; i++)
        val[i] = eq[1 + i] ? (char)eq[1 + i] : '?'; /* (a C string) */
    val[vlen] = '\0';
    kv = realloc(s->keys, (s->ntxt + 1) * sizeof(*kv));
    if (kv)
        s->keys = kv;
    vv = kv ? realloc(s->vals, (s->ntxt + 1) * sizeof(*vv)) : NULL;
    if (vv)
        s->vals = vv;
    if (!kv || !vv) {
        free(key);
        free(val);
        return -ENOMEM;
    }
    s->keys[s->ntxt] = key;
    s->vals[s->ntxt] = val;
    s->ntxt++;
    return 0;
}

int dpr_dnsrec_txt_rdata(dpr_dnsrec_svc *s, const uint8_t *rdata, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t len = rdata[i];
        if (len > n - i - 1)
            len = n - i - 1;
        int r = dpr_dnsrec_txt_add(s, rdata + i + 1, len);
        if (r < 0)
            return r;
        i += 1 + len;
    }
    return 0;
}

void dpr_dnsrec_svc_finish(dpr_dnsrec_svc *s)
{
    s->pub.type = s->type;
    s->pub.name = s->name;
    s->pub.domain = s->domain;
    s->pub.host = s->host;
    s->pub.port = s->port;
    s->pub.naddresses = s->naddrs;
    s->pub.addresses = (const char *const *)s->addrs;
    s->pub.ntxt = s->ntxt;
    s->pub.txt_keys = (const char *const *)s->keys;
    s->pub.txt_values = (const char *const *)s->vals;
}

bool dpr_dnsrec_supported(const dpr_dnsrec_svc *s)
{
    const char *v = dpr_dnsrec_txt_get(s, "txtvers");
    return v && strcmp(v, DPR_DNSREC_TXTVERS) == 0;
}

bool dpr_dnsrec_keep(const dpr_dnsrec_svc *s, const char *cluster)
{
    const char *c = dpr_dnsrec_txt_get(s, "cluster");
    return dpr_dnsrec_supported(s) && (!cluster || (c && strcmp(c, cluster) == 0));
}

/* A TXT integer, or -1 (absent, not a number). */
static long long txt_int(const dpr_dnsrec_svc *s, const char *key)
{
    const char *v = dpr_dnsrec_txt_get(s, key);
    uint64_t x;
    if (!v || dpr_parse_u64(v, strlen(v), 0, (uint64_t)1 << 62, &x) < 0)
        return -1;
    return (long long)x;
}

static const char *txt_or_empty(const dpr_dnsrec_svc *s, const char *key)
{
    const char *v = dpr_dnsrec_txt_get(s, key);
    return v ? v : "";
}

static int cmp_svc(const void *pa, const void *pb)
{
    const dpr_dnsrec_svc *a = *(dpr_dnsrec_svc *const *)pa, *b = *(dpr_dnsrec_svc *const *)pb;
    int c = strcmp(a->type, b->type);
    if (c)
        return c;
    if (strcmp(a->type, DPR_DISCOVER_FINDER) == 0) {
        long long ta = txt_int(a, "term"), tb = txt_int(b, "term");
        if (ta != tb)
            return ta > tb ? -1 : 1;
        c = strcmp(txt_or_empty(a, "node"), txt_or_empty(b, "node"));
    } else if (strcmp(a->type, DPR_DISCOVER_CACHESTORE) == 0) {
        c = strcmp(txt_or_empty(a, "deployment"), txt_or_empty(b, "deployment"));
        if (c == 0) {
            long long sa = txt_int(a, "shard"), sb = txt_int(b, "shard");
            sa = sa < 0 ? 1LL << 62 : sa;
            sb = sb < 0 ? 1LL << 62 : sb;
            c = sa < sb ? -1 : sa > sb;
        }
    } else {
        c = strcmp(txt_or_empty(a, "node"), txt_or_empty(b, "node"));
    }
    return c ? c : strcmp(a->name, b->name);
}

void dpr_dnsrec_sort(dpr_dnsrec_svc **v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_svc);
}

int dpr_dnsrec_endpoint(const dpr_dnsrec_svc *s, char *buf, size_t cap)
{
    const char *v = dpr_dnsrec_txt_get(s, "addr");
    int n;

    if (!v || !*v)
        v = dpr_dnsrec_txt_get(s, "finder");
    if (v && *v)
        n = snprintf(buf, cap, "%s", v);
    else {
        const char *host = s->naddrs ? s->addrs[0] : s->host;
        if (!host || !*host || !s->resolved)
            return -ENOENT;
        n = snprintf(buf, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                     (unsigned)s->port);
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* ---- arguments ---------------------------------------------------------------- */

bool dpr_dnsrec_is_mdns(const char *domain)
{
    return strcasecmp(domain, "local") == 0 || strcasecmp(domain, "local.") == 0;
}

static bool label_char(char c, bool edge)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || (!edge && c == '-');
}

int dpr_dnsrec_check_domain(const char *domain, char *out, size_t cap, dpr_err *err)
{
    size_t n = domain ? strlen(domain) : 0;
    bool ok = n > 0;

    if (ok && domain[n - 1] == '.')
        n--;
    ok = ok && n > 0 && n <= 253;
    for (size_t i = 0, start = 0; ok && i <= n; i++) {
        if (i < n && domain[i] != '.')
            continue;
        size_t len = i - start;
        ok = len >= 1 && len <= DPR_DNSREC_LABEL_MAX;
        for (size_t k = start; ok && k < i; k++)
            ok = label_char(domain[k], k == start || k == i - 1);
        start = i + 1;
    }
    if (!ok)
        return dpr_err_set(err, -EINVAL, "domain '%.80s': expected a DNS name such as local or "
                           "dpr.example.com (labels of letters, digits, '-' and '_', at most "
                           "63 each)", domain ? domain : "");
    if (n >= cap)
        return dpr_err_set(err, -ENAMETOOLONG, "domain too long");
    memcpy(out, domain, n);
    out[n] = '\0';
    return 0;
}

int dpr_dnsrec_parse_nameserver(const char *text, struct sockaddr_storage *out,
                                socklen_t *outlen, dpr_err *err)
{
    char host[64];
    const char *port = NULL, *t = text;
    size_t hlen;
    uint64_t p = 53;

    memset(out, 0, sizeof(*out));
    if (!t || !*t)
        goto bad;
    if (t[0] == '[') {
        const char *end = strchr(t, ']');
        if (!end || (end[1] && end[1] != ':'))
            goto bad;
        hlen = (size_t)(end - t - 1);
        t++;
        port = end[1] ? end + 2 : NULL;
    } else if (strchr(t, ':') && strchr(t, ':') == strrchr(t, ':')) {
        hlen = (size_t)(strchr(t, ':') - t);
        port = strchr(t, ':') + 1;
    } else {
        hlen = strlen(t); /* an IPv4 address, or a bare IPv6 one */
    }
    if (hlen == 0 || hlen >= sizeof(host))
        goto bad;
    memcpy(host, t, hlen);
    host[hlen] = '\0';
    if (port && dpr_parse_u64(port, strlen(port), 1, 65535, &p) < 0)
        return dpr_err_set(err, -EINVAL, "nameserver '%.80s': port must be 1..65535", text);
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        *outlen = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        *outlen = sizeof(*a6);
        return 0;
    }
bad:
    return dpr_err_set(err, -EINVAL, "nameserver '%.80s': expected an IP address, optionally "
                       "with :PORT (e.g. 10.0.0.53 or 127.0.0.1:5353; IPv6: [fd00::53]:5353)",
                       text ? text : "");
}

bool dpr_dnsrec_valid_type(const char *type)
{
    /* _[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?._(tcp|udp) */
    size_t n = type ? strlen(type) : 0, i = 1;
    if (n < 7 || type[0] != '_')
        return false;
    while (i < n && type[i] != '.')
        i++;
    size_t len = i - 1;
    if (len < 1 || len > 15 || i == n)
        return false;
    for (size_t k = 1; k < i; k++) {
        char c = type[k];
        bool edge = k == 1 || k == i - 1;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (!edge && c == '-')))
            return false;
    }
    return strcmp(type + i, "._tcp") == 0 || strcmp(type + i, "._udp") == 0;
}

/* ---- DNS answers ----------------------------------------------------------------- */

int dpr_dnsrec_name_text(const uint8_t *wire, char *out, size_t cap)
{
    int r = ns_name_ntop(wire, out, cap);
    if (r < 0)
        return errno == EMSGSIZE ? -ENAMETOOLONG : -EINVAL;
    return 0;
}

int dpr_dnsrec_name_wire(const char *text, uint8_t *wire, size_t cap)
{
    return ns_name_pton(text, wire, cap) < 0 ? -EINVAL : 0;
}

bool dpr_dnsrec_name_is_root(const uint8_t *wire)
{
    return wire[0] == 0;
}

/* Length of a wire-form name (labels and the root byte); names come from
 * ns_name_unpack / ns_name_pton, so they are well formed. */
static size_t name_len(const uint8_t *w)
{
    size_t i = 0;
    while (w[i])
        i += 1 + w[i];
    return i + 1;
}

static bool name_eq(const uint8_t *a, const uint8_t *b)
{
    size_t n = name_len(a);
    if (n != name_len(b))
        return false;
    for (size_t i = 0; i < n;) {
        size_t len = a[i];
        if (b[i] != len)
            return false;
        for (size_t k = 1; k <= len; k++) {
            uint8_t x = a[i + k], y = b[i + k];
            if (x >= 'A' && x <= 'Z')
                x = (uint8_t)(x - 'A' + 'a');
            if (y >= 'A' && y <= 'Z')
                y = (uint8_t)(y - 'A' + 'a');
            if (x != y)
                return false;
        }
        i += 1 + len;
        if (len == 0)
            break;
    }
    return true;
}

int dpr_dnsrec_instance_label(const uint8_t *target, const uint8_t *owner, char *out,
                              size_t cap)
{
    size_t len = target[0];
    if (len == 0 || !name_eq(target + 1 + len, owner))
        return -ENOENT;
    if (memchr(target + 1, '\0', len))
        return -EINVAL;
    if (len >= cap)
        return -ENAMETOOLONG;
    memcpy(out, target + 1, len);
    out[len] = '\0';
    return 0;
}

const char *dpr_dnsrec_rcode_name(int rcode)
{
    static const char *names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
                                  "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
                                  "NOTZONE"};
    static __thread char other[24];
    if (rcode >= 0 && (size_t)rcode < sizeof(names) / sizeof(names[0]))
        return names[rcode];
    snprintf(other, sizeof(other), "RCODE %d", rcode);
    return other;
}

/* One record of qtype: its RDATA into *rr. 0, or -EPROTO. */
static int parse_rdata(const ns_msg *msg, const ns_rr *r, uint16_t qtype, dpr_dnsrec_rr *rr)
{
    const uint8_t *rd = ns_rr_rdata(*r);
    size_t rdlen = ns_rr_rdlen(*r);
    const uint8_t *base = ns_msg_base(*msg), *end = ns_msg_end(*msg);
    int n;

    memset(rr, 0, sizeof(*rr));
    rr->type = qtype;
    switch (qtype) {
    case ns_t_ptr:
        n = ns_name_unpack(base, end, rd, rr->target, sizeof(rr->target));
        return n < 0 || (size_t)n != rdlen ? -EPROTO : 0;
    case ns_t_srv:
        if (rdlen < 7)
            return -EPROTO;
        rr->priority = ns_get16(rd);
        rr->weight = ns_get16(rd + 2);
        rr->port = ns_get16(rd + 4);
        n = ns_name_unpack(base, end, rd + 6, rr->target, sizeof(rr->target));
        return n < 0 || (size_t)n != rdlen - 6 ? -EPROTO : 0;
    case ns_t_txt:
        rr->rdata = rd;
        rr->rdlen = rdlen;
        return 0;
    case ns_t_a:
        if (rdlen != 4)
            return -EPROTO;
        inet_ntop(AF_INET, rd, rr->addr, sizeof(rr->addr));
        return 0;
    case ns_t_aaaa:
        if (rdlen != 16)
            return -EPROTO;
        inet_ntop(AF_INET6, rd, rr->addr, sizeof(rr->addr));
        return 0;
    default:
        return -EPROTO;
    }
}

int dpr_dnsrec_answers(const uint8_t *msg, size_t len, uint16_t qtype, const uint8_t *qname,
                       int *rcode, dpr_dnsrec_rr **out, size_t *n, dpr_err *err)
{
    ns_msg m;
    int count;
    dpr_dnsrec_rr *v = NULL;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    *rcode = -1;
    if (qtype != ns_t_ptr && qtype != ns_t_srv && qtype != ns_t_txt && qtype != ns_t_a &&
        qtype != ns_t_aaaa)
        return dpr_err_set(err, -EINVAL, "record type %u is not one DNS-SD uses", qtype);
    if (len > 65535 || ns_initparse(msg, (int)len, &m) < 0)
        return dpr_err_set(err, -EPROTO, "an answer that is not a DNS message");
    if (!ns_msg_getflag(m, ns_f_qr))
        return dpr_err_set(err, -EPROTO, "a DNS message that is not a response");
    *rcode = ns_msg_getflag(m, ns_f_rcode);
    count = ns_msg_count(m, ns_s_an);
    if (count > 0 && !(v = calloc((size_t)count, sizeof(*v))))
        return dpr_err_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < count; i++) {
        ns_rr r;
        uint8_t owner[DPR_DNSREC_NAME_MAX];
        if (ns_parserr(&m, ns_s_an, i, &r) < 0) {
            free(v);
            return dpr_err_set(err, -EPROTO, "answer record %d does not parse", i);
        }
        if (ns_rr_type(r) != qtype || ns_rr_class(r) != ns_c_in)
            continue;
        /* ns_rr_name is the text form: compare wire forms */
        if (ns_name_pton(ns_rr_name(r), owner, sizeof(owner)) < 0 || !name_eq(owner, qname))
            continue;
        if (parse_rdata(&m, &r, qtype, &v[k]) < 0) {
            free(v);
            return dpr_err_set(err, -EPROTO, "a %s record with malformed data",
                               qtype == ns_t_ptr   ? "PTR"
                               : qtype == ns_t_srv ? "SRV"
                               : qtype == ns_t_txt ? "TXT"
                               : qtype == ns_t_a   ? "A"
                                                   : "AAAA");
        }
        k++;
    }
    *out = v;
    *n = k;
    return 0;
}

/* ---- messages ------------------------------------------------------------------------ */

void dpr_dnsrec_describe_where(const char *domain, int timeout_ms, const char *nameserver,
                               char *out, size_t cap)
{
    if (dpr_dnsrec_is_mdns(domain))
        snprintf(out, cap, "domain 'local' (mDNS through avahi-daemon, %gs)",
                 timeout_ms / 1000.0);
    else
        snprintf(out, cap, "domain '%s' (unicast DNS-SD, DNS server %s)", domain,
                 nameserver ? nameserver : "of the system's resolver");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *cluster_of(const dpr_dnsrec_svc *s)
{
    const char *c = dpr_dnsrec_txt_get(s, "cluster");
    return c ? c : "(no cluster=)";
}

void dpr_dnsrec_no_agents_message(const char *cluster, const char *domain, int timeout_ms,
                                  const char *nameserver, dpr_dnsrec_svc *const *seen,
                                  size_t nseen, dpr_err *err)
{
    char where[200], others[200] = "", unknown_text[128] = "";
    size_t olen = 0, unknown = 0, nother = 0;
    const char *other[16];

    dpr_dnsrec_describe_where(domain, timeout_ms, nameserver, where, sizeof(where));
    /* the other clusters seen, by name; for each its nodes (records come
     * sorted by node) */
    for (size_t i = 0; i < nseen; i++) {
        const char *c = cluster_of(seen[i]);
        bool dup = false;
        if (!dpr_dnsrec_supported(seen[i])) {
            unknown++;
            continue;
        }
        for (size_t k = 0; k < nother; k++)
            dup |= strcmp(other[k], c) == 0;
        if (!dup && strcmp(c, cluster) != 0 && nother < 16)
            other[nother++] = c;
    }
    qsort(other, nother, sizeof(other[0]), cmp_str);
    for (size_t i = 0; i < nother && olen < sizeof(others); i++) {
        int m = snprintf(others + olen, sizeof(others) - olen, "%scluster '%s' (",
                         i ? "; " : "agents of ", other[i]);
        olen += m > 0 ? (size_t)m : 0;
        bool first = true;
        for (size_t k = 0; k < nseen && olen < sizeof(others); k++) {
            const char *node = dpr_dnsrec_txt_get(seen[k], "node");
            if (!dpr_dnsrec_supported(seen[k]) || strcmp(cluster_of(seen[k]), other[i]) != 0)
                continue;
            m = snprintf(others + olen, sizeof(others) - olen, "%s%s", first ? "" : ", ",
                         node ? node : seen[k]->name);
            olen += m > 0 ? (size_t)m : 0;
            first = false;
        }
        if (olen < sizeof(others)) {
            m = snprintf(others + olen, sizeof(others) - olen, ")");
            olen += m > 0 ? (size_t)m : 0;
        }
    }
    if (unknown)
        snprintf(unknown_text, sizeof(unknown_text), "%s%zu agent record(s) of another TXT "
                 "format (txtvers not " DPR_DNSREC_TXTVERS "), ignored", nother ? "; " : "",
                 unknown);
    if (nother || unknown)
        dpr_err_set(err, -ENOENT, "no dpr-agent of cluster '%s' found in %s; seen instead: "
                    "%s%s", cluster, where, others, unknown_text);
    else if (dpr_dnsrec_is_mdns(domain))
        dpr_err_set(err, -ENOENT, "no dpr-agent of cluster '%s' found in %s; none at all: are "
                    "the agents and avahi-daemon running? mDNS does not cross routers: from "
                    "another network, use a unicast zone (dprctl dns-zone)", cluster, where);
    else
        dpr_err_set(err, -ENOENT, "no dpr-agent of cluster '%s' found in %s; no "
                    DPR_DISCOVER_AGENT " records there: load the cluster's records into the "
                    "zone (dprctl dns-zone %s --domain %s)", cluster, where, cluster, domain);
}
