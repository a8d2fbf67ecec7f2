/*
 * test_discover.c - libdpr-discover's pure parts (libdpr/discover/dnsrec.h):
 * TXT strings, what a client keeps and in which order, endpoints, domains,
 * nameservers and service types, DNS answers in wire form (built here, with
 * name compression as servers send them), instance names, and the message
 * when no agent of a cluster is found (python-dpr's words). Also the
 * argument checks of the public API, which fail before any I/O. The
 * browses themselves run against a real knotd and real agents in
 * tests/libdpr/test_client_cluster.py (unicast) and inside real nodes with
 * avahi-daemon in tests/cluster/test_discovery.py (mDNS).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dnsrec.h"
#include "dpr/discover.h"

/* ---- a DNS response builder ---------------------------------------------------- */

typedef struct msgb {
    uint8_t buf[4096];
    size_t len;
    const uint8_t *dnptrs[32];
    uint16_t ancount;
} msgb;

static void put16(msgb *m, uint16_t v)
{
    m->buf[m->len++] = (uint8_t)(v >> 8);
    m->buf[m->len++] = (uint8_t)v;
}

static void put_name(msgb *m, const char *name)
{
    int n = dn_comp(name, m->buf + m->len, (int)(sizeof(m->buf) - m->len),
                    (unsigned char **)m->dnptrs, (unsigned char **)&m->dnptrs[31]);
    if (n < 0)
        abort();
    m->len += (size_t)n;
}

/* A response (rcode) to the question (name, type). */
static void msg_start(msgb *m, const char *qname, uint16_t qtype, int rcode, bool qr)
{
    memset(m, 0, sizeof(*m));
    m->dnptrs[0] = m->buf;
    put16(m, 0x1234);
    put16(m, (uint16_t)((qr ? 0x8000 : 0) | 0x0400 | (rcode & 0xf))); /* QR, AA, rcode */
    put16(m, 1);
    put16(m, 0);
    put16(m, 0);
    put16(m, 0);
    put_name(m, qname);
    put16(m, qtype);
    put16(m, ns_c_in);
}

/* Starts an answer record; returns where its RDLENGTH goes. */
static size_t rr_start(msgb *m, const char *owner, uint16_t type)
{
    put_name(m, owner);
    put16(m, type);
    put16(m, ns_c_in);
    put16(m, 0);
    put16(m, 120);
    size_t at = m->len;
    put16(m, 0);
    m->ancount++;
    m->buf[6] = (uint8_t)(m->ancount >> 8);
    m->buf[7] = (uint8_t)m->ancount;
    return at;
}

static void rr_end(msgb *m, size_t at)
{
    size_t n = m->len - at - 2;
    m->buf[at] = (uint8_t)(n >> 8);
    m->buf[at + 1] = (uint8_t)n;
}

static void add_ptr(msgb *m, const char *owner, const char *target)
{
    size_t at = rr_start(m, owner, ns_t_ptr);
    put_name(m, target);
    rr_end(m, at);
}

static void add_srv(msgb *m, const char *owner, uint16_t prio, uint16_t weight, uint16_t port,
                    const char *target)
{
    size_t at = rr_start(m, owner, ns_t_srv);
    put16(m, prio);
    put16(m, weight);
    put16(m, port);
    put_name(m, target); /* compressed, as some servers do */
    rr_end(m, at);
}

static void add_raw(msgb *m, const char *owner, uint16_t type, const void *data, size_t n)
{
    size_t at = rr_start(m, owner, type);
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    rr_end(m, at);
}

static void wire(const char *text, uint8_t *w)
{
    if (dpr_dnsrec_name_wire(text, w, DPR_DNSREC_NAME_MAX) < 0)
        abort();
}

/* ---- records ------------------------------------------------------------------- */

static dpr_dnsrec_svc *svc_with(dpr_dnsrec_list *l, const char *type, const char *name,
                                const char *const *txt)
{
    dpr_dnsrec_svc *s = NULL;
    if (dpr_dnsrec_svc_new(l, type, name, "dpr.test", &s) < 0)
        abort();
    for (; txt && *txt; txt++)
        dpr_dnsrec_txt_add(s, (const uint8_t *)*txt, strlen(*txt));
    dpr_dnsrec_svc_finish(s);
    return s;
}

TEST(txt_strings)
{
    dpr_dnsrec_list l = {0};
    const char *txt[] = {"txtvers=1", "Cluster=demo", "cluster=other", "", "=nokey", "flag",
                         "addr=10.0.0.1:7100", "eq=a=b", NULL};
    dpr_dnsrec_svc *s = svc_with(&l, DPR_DISCOVER_CACHESTORE, "kv-0@demo", txt);
    CHECK_EQ_U64(s->ntxt, 5);
    CHECK(!strcmp(dpr_dnsrec_txt_get(s, "cluster"), "demo")); /* lowered, first counts */
    CHECK(!strcmp(dpr_dnsrec_txt_get(s, "flag"), ""));
    CHECK(!strcmp(dpr_dnsrec_txt_get(s, "eq"), "a=b"));
    CHECK(dpr_dnsrec_txt_get(s, "") == NULL);
    CHECK(dpr_dnsrec_txt_get(s, "nokey") == NULL);
    CHECK(!strcmp(dpr_service_txt(&s->pub, "addr"), "10.0.0.1:7100"));
    CHECK(!strcmp(s->pub.txt_keys[1], "cluster") && !strcmp(s->pub.txt_values[1], "demo"));
    /* the wire form: length-prefixed, a length past the end keeps what is there */
    dpr_dnsrec_svc *w = svc_with(&l, DPR_DISCOVER_AGENT, "n1@demo", NULL);
    static const uint8_t rd[] = "\x09txtvers=1\x0c" "cluster=demo\x00\x09node=n1xx";
    CHECK_EQ_INT(dpr_dnsrec_txt_rdata(w, rd, sizeof(rd) - 1 - 2), 0);
    dpr_dnsrec_svc_finish(w);
    CHECK_EQ_U64(w->ntxt, 3);
    CHECK(!strcmp(dpr_dnsrec_txt_get(w, "node"), "n1"));
    /* a NUL in a value does not cut it short silently */
    static const uint8_t nul[] = "k=a\0b";
    dpr_dnsrec_txt_add(w, nul, 5);
    CHECK(!strcmp(dpr_dnsrec_txt_get(w, "k"), "a?b"));
    dpr_dnsrec_list_free(&l);
}

TEST(keep_and_sort)
{
    dpr_dnsrec_list l = {0};
    const char *n2[] = {"txtvers=1", "cluster=demo", "node=n2", NULL};
    const char *n1[] = {"txtvers=1", "cluster=demo", "node=n1", NULL};
    const char *other[] = {"txtvers=1", "cluster=blue", "node=n1", NULL};
    const char *future[] = {"txtvers=2", "cluster=demo", "node=n0", NULL};
    const char *none[] = {"cluster=demo", "node=n9", NULL};
    dpr_dnsrec_svc *a2 = svc_with(&l, DPR_DISCOVER_AGENT, "n2@demo", n2);
    dpr_dnsrec_svc *a1 = svc_with(&l, DPR_DISCOVER_AGENT, "n1@demo", n1);
    dpr_dnsrec_svc *b1 = svc_with(&l, DPR_DISCOVER_AGENT, "n1@blue", other);
    dpr_dnsrec_svc *f = svc_with(&l, DPR_DISCOVER_AGENT, "n0@demo", future);
    dpr_dnsrec_svc *x = svc_with(&l, DPR_DISCOVER_AGENT, "n9@demo", none);
    CHECK(dpr_dnsrec_keep(a1, "demo") && dpr_dnsrec_keep(a2, "demo"));
    CHECK(!dpr_dnsrec_keep(b1, "demo") && dpr_dnsrec_keep(b1, NULL));
    CHECK(!dpr_dnsrec_keep(f, "demo") && !dpr_dnsrec_keep(f, NULL));
    CHECK(!dpr_dnsrec_keep(x, NULL));
    dpr_dnsrec_svc *v[2] = {a2, a1};
    dpr_dnsrec_sort(v, 2);
    CHECK(v[0] == a1 && v[1] == a2);
    /* finders: highest term first; instances: by deployment, then shard */
    const char *t3[] = {"txtvers=1", "term=3", "node=n2", NULL};
    const char *t12[] = {"txtvers=1", "term=12", "node=n3", NULL};
    dpr_dnsrec_svc *fa = svc_with(&l, DPR_DISCOVER_FINDER, "finder@demo", t3);
    dpr_dnsrec_svc *fb = svc_with(&l, DPR_DISCOVER_FINDER, "finder@demo #2", t12);
    dpr_dnsrec_svc *w[2] = {fa, fb};
    dpr_dnsrec_sort(w, 2);
    CHECK(w[0] == fb && w[1] == fa);
    const char *kv10[] = {"txtvers=1", "deployment=kv", "shard=10", NULL};
    const char *kv2[] = {"txtvers=1", "deployment=kv", "shard=2", NULL};
    const char *aa0[] = {"txtvers=1", "deployment=aa", "shard=0", NULL};
    dpr_dnsrec_svc *c10 = svc_with(&l, DPR_DISCOVER_CACHESTORE, "kv-10@demo", kv10);
    dpr_dnsrec_svc *c2 = svc_with(&l, DPR_DISCOVER_CACHESTORE, "kv-2@demo", kv2);
    dpr_dnsrec_svc *ca = svc_with(&l, DPR_DISCOVER_CACHESTORE, "aa-0@demo", aa0);
    dpr_dnsrec_svc *u[3] = {c10, c2, ca};
    dpr_dnsrec_sort(u, 3);
    CHECK(u[0] == ca && u[1] == c2 && u[2] == c10);
    dpr_dnsrec_list_free(&l);
}

TEST(endpoints)
{
    dpr_dnsrec_list l = {0};
    char ep[64];
    const char *inst[] = {"txtvers=1", "addr=10.0.0.1:7100", "finder=10.0.0.1:7000", NULL};
    const char *agent[] = {"txtvers=1", "finder=[fd00::1]:7000", NULL};
    dpr_dnsrec_svc *a = svc_with(&l, DPR_DISCOVER_CACHESTORE, "kv-0@demo", inst);
    dpr_dnsrec_svc *b = svc_with(&l, DPR_DISCOVER_AGENT, "n1@demo", agent);
    dpr_dnsrec_svc *c = svc_with(&l, DPR_DISCOVER_AGENT, "n2@demo", NULL);
    CHECK_EQ_INT(dpr_dnsrec_endpoint(a, ep, sizeof(ep)), 0);
    CHECK(!strcmp(ep, "10.0.0.1:7100"));
    CHECK_EQ_INT(dpr_service_endpoint(&b->pub, ep, sizeof(ep)), 0);
    CHECK(!strcmp(ep, "[fd00::1]:7000"));
    CHECK_EQ_INT(dpr_dnsrec_endpoint(c, ep, sizeof(ep)), -ENOENT); /* not resolved */
    dpr_dnsrec_set_target(c, "n2.dpr.test", 7000);
    CHECK_EQ_INT(dpr_dnsrec_endpoint(c, ep, sizeof(ep)), 0);
    CHECK(!strcmp(ep, "n2.dpr.test:7000"));
    dpr_dnsrec_add_address(c, "fd00::2");
    dpr_dnsrec_add_address(c, "10.0.0.2");
    dpr_dnsrec_add_address(c, "fd00::2");
    CHECK_EQ_U64(c->naddrs, 2);
    CHECK_EQ_INT(dpr_dnsrec_endpoint(c, ep, sizeof(ep)), 0);
    CHECK(!strcmp(ep, "[fd00::2]:7000"));
    CHECK_EQ_INT(dpr_dnsrec_endpoint(c, ep, 8), -ENAMETOOLONG);
    dpr_dnsrec_list_free(&l);
}

TEST(domains_nameservers_types)
{
    char d[256];
    dpr_err err = DPR_ERR_INIT;
    CHECK_EQ_INT(dpr_dnsrec_check_domain("dpr.example.com.", d, sizeof(d), NULL), 0);
    CHECK(!strcmp(d, "dpr.example.com"));
    CHECK_EQ_INT(dpr_dnsrec_check_domain("local", d, sizeof(d), NULL), 0);
    CHECK(dpr_dnsrec_is_mdns(d) && dpr_dnsrec_is_mdns("LOCAL.") && !dpr_dnsrec_is_mdns("lan"));
    CHECK_EQ_INT(dpr_dnsrec_check_domain("_x.a-b.c_", d, sizeof(d), NULL), 0);
    const char *bad[] = {"", ".", "a..b", "-a.b", "a-.b", "a b", "a/b", "a.b..", NULL};
    for (int i = 0; bad[i]; i++)
        CHECK_EQ_INT(dpr_dnsrec_check_domain(bad[i], d, sizeof(d), &err), -EINVAL);
    CHECK(strstr(err.msg, "expected a DNS name such as local or dpr.example.com") != NULL);
    char long_label[80];
    memset(long_label, 'a', 64);
    long_label[64] = '\0';
    CHECK_EQ_INT(dpr_dnsrec_check_domain(long_label, d, sizeof(d), NULL), -EINVAL);

    struct sockaddr_storage ss;
    socklen_t len;
    CHECK_EQ_INT(dpr_dnsrec_parse_nameserver("127.0.0.1", &ss, &len, NULL), 0);
    CHECK(ss.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&ss)->sin_port) == 53);
    CHECK_EQ_INT(dpr_dnsrec_parse_nameserver("127.0.0.1:5353", &ss, &len, NULL), 0);
    CHECK(ntohs(((struct sockaddr_in *)&ss)->sin_port) == 5353 &&
          len == sizeof(struct sockaddr_in));
    CHECK_EQ_INT(dpr_dnsrec_parse_nameserver("[::1]:5300", &ss, &len, NULL), 0);
    CHECK(ss.ss_family == AF_INET6 && ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 5300);
    CHECK_EQ_INT(dpr_dnsrec_parse_nameserver("fd00::53", &ss, &len, NULL), 0);
    CHECK(ss.ss_family == AF_INET6 && ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 53);
    const char *badns[] = {"", "ns.example.com", "1.2.3.4:0", "1.2.3.4:x", "[::1", "[::1]x",
                           "1.2.3:53", "[1.2.3.4]:53x", NULL};
    for (int i = 0; badns[i]; i++)
        CHECK_EQ_INT(dpr_dnsrec_parse_nameserver(badns[i], &ss, &len, &err), -EINVAL);
    CHECK_EQ_INT(dpr_dnsrec_parse_nameserver("ns.example.com", &ss, &len, &err), -EINVAL);
    CHECK(strstr(err.msg, "expected an IP address") != NULL);

    CHECK(dpr_dnsrec_valid_type(DPR_DISCOVER_AGENT) && dpr_dnsrec_valid_type("_x._udp"));
    CHECK(!dpr_dnsrec_valid_type("_dpr-agent") && !dpr_dnsrec_valid_type("dpr._tcp"));
    CHECK(!dpr_dnsrec_valid_type("_-a._tcp") && !dpr_dnsrec_valid_type("_a._sctp"));
    CHECK(!dpr_dnsrec_valid_type("_abcdefghijklmnop._tcp") && !dpr_dnsrec_valid_type(NULL));
}

/* ---- DNS answers ---------------------------------------------------------------- */

TEST(ptr_srv_txt_a_answers)
{
    msgb m;
    uint8_t q[DPR_DNSREC_NAME_MAX], owner[DPR_DNSREC_NAME_MAX];
    dpr_dnsrec_rr *rr;
    size_t n;
    int rcode;
    char label[64], text[300];
    dpr_err err = DPR_ERR_INIT;

    msg_start(&m, "_dpr-agent._tcp.dpr.test", ns_t_ptr, ns_r_noerror, true);
    add_ptr(&m, "_dpr-agent._tcp.dpr.test", "n1\\@demo._dpr-agent._tcp.dpr.test");
    add_raw(&m, "_dpr-agent._tcp.dpr.test", ns_t_cname, "\x01x\x00", 3); /* skipped */
    add_ptr(&m, "_other._tcp.dpr.test", "n9\\@demo._other._tcp.dpr.test"); /* other owner */
    add_ptr(&m, "_DPR-AGENT._TCP.DPR.TEST", "deep.n2\\@demo._dpr-agent._tcp.dpr.test");
    wire("_dpr-agent._tcp.dpr.test.", q);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_ptr, q, &rcode, &rr, &n, &err), 0);
    CHECK_EQ_INT(rcode, ns_r_noerror);
    CHECK_EQ_U64(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(dpr_dnsrec_instance_label(rr[0].target, q, label, sizeof(label)), 0);
        CHECK(!strcmp(label, "n1@demo"));
        CHECK_EQ_INT(dpr_dnsrec_name_text(rr[0].target, text, sizeof(text)), 0);
        CHECK(!strcmp(text, "n1\\@demo._dpr-agent._tcp.dpr.test"));
        /* two labels below: not an instance of the type */
        CHECK_EQ_INT(dpr_dnsrec_instance_label(rr[1].target, q, label, sizeof(label)),
                     -ENOENT);
    }
    free(rr);
    wire("x._other._tcp.dpr.test.", owner);
    CHECK_EQ_INT(dpr_dnsrec_instance_label(owner, q, label, sizeof(label)), -ENOENT);
    wire("a\\000b._dpr-agent._tcp.dpr.test.", owner);
    CHECK_EQ_INT(dpr_dnsrec_instance_label(owner, q, label, sizeof(label)), -EINVAL);

    msg_start(&m, "n1\\@demo._dpr-agent._tcp.dpr.test", ns_t_srv, ns_r_noerror, true);
    add_srv(&m, "n1\\@demo._dpr-agent._tcp.dpr.test", 0, 0, 7000, "n1.dpr.test");
    wire("n1\\@demo._dpr-agent._tcp.dpr.test.", q);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_srv, q, &rcode, &rr, &n, &err), 0);
    CHECK_EQ_U64(n, 1);
    if (n == 1) {
        CHECK(rr[0].port == 7000 && rr[0].priority == 0 && rr[0].weight == 0);
        CHECK_EQ_INT(dpr_dnsrec_name_text(rr[0].target, text, sizeof(text)), 0);
        CHECK(!strcmp(text, "n1.dpr.test"));
    }
    free(rr);

    msg_start(&m, "n1\\@demo._dpr-agent._tcp.dpr.test", ns_t_txt, ns_r_noerror, true);
    add_raw(&m, "n1\\@demo._dpr-agent._tcp.dpr.test", ns_t_txt,
            "\x09txtvers=1\x0c" "cluster=demo", 23);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_txt, q, &rcode, &rr, &n, &err), 0);
    CHECK(n == 1 && rr[0].rdlen == 23 && rr[0].rdata[0] == 9);
    free(rr);

    msg_start(&m, "n1.dpr.test", ns_t_a, ns_r_noerror, true);
    add_raw(&m, "n1.dpr.test", ns_t_a, "\x0a\x00\x00\x01", 4);
    add_raw(&m, "n1.dpr.test", ns_t_a, "\x0a\x00\x00\x02", 4);
    wire("n1.dpr.test.", q);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_a, q, &rcode, &rr, &n, &err), 0);
    CHECK(n == 2 && !strcmp(rr[0].addr, "10.0.0.1") && !strcmp(rr[1].addr, "10.0.0.2"));
    free(rr);
    msg_start(&m, "n1.dpr.test", ns_t_aaaa, ns_r_noerror, true);
    add_raw(&m, "n1.dpr.test", ns_t_aaaa,
            "\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 16);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_aaaa, q, &rcode, &rr, &n, &err), 0);
    CHECK(n == 1 && !strcmp(rr[0].addr, "fd00::1"));
    free(rr);
}

TEST(bad_answers)
{
    msgb m;
    uint8_t q[DPR_DNSREC_NAME_MAX];
    dpr_dnsrec_rr *rr;
    size_t n;
    int rcode;
    dpr_err err = DPR_ERR_INIT;

    wire("x.dpr.test.", q);
    /* an error response: its rcode, no records */
    msg_start(&m, "x.dpr.test", ns_t_ptr, ns_r_refused, true);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_ptr, q, &rcode, &rr, &n, &err), 0);
    CHECK(rcode == ns_r_refused && n == 0);
    free(rr);
    CHECK(!strcmp(dpr_dnsrec_rcode_name(ns_r_refused), "REFUSED"));
    CHECK(!strcmp(dpr_dnsrec_rcode_name(ns_r_nxdomain), "NXDOMAIN"));
    CHECK(!strcmp(dpr_dnsrec_rcode_name(15), "RCODE 15"));
    /* a query, not a response */
    msg_start(&m, "x.dpr.test", ns_t_ptr, 0, false);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_ptr, q, &rcode, &rr, &n, &err), -EPROTO);
    CHECK(strstr(err.msg, "not a response") != NULL);
    /* cut short */
    msg_start(&m, "x.dpr.test", ns_t_ptr, 0, true);
    add_ptr(&m, "x.dpr.test", "y.dpr.test");
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len - 3, ns_t_ptr, q, &rcode, &rr, &n, &err),
                 -EPROTO);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, 5, ns_t_ptr, q, &rcode, &rr, &n, &err), -EPROTO);
    /* malformed RDATA of the type asked */
    msg_start(&m, "x.dpr.test", ns_t_srv, 0, true);
    add_raw(&m, "x.dpr.test", ns_t_srv, "\x00\x00\x00\x00\x1b", 5);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_srv, q, &rcode, &rr, &n, &err), -EPROTO);
    CHECK(strstr(err.msg, "SRV record with malformed data") != NULL);
    msg_start(&m, "x.dpr.test", ns_t_a, 0, true);
    add_raw(&m, "x.dpr.test", ns_t_a, "\x0a\x00\x00", 3);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_a, q, &rcode, &rr, &n, &err), -EPROTO);
    msg_start(&m, "x.dpr.test", ns_t_ptr, 0, true);
    add_raw(&m, "x.dpr.test", ns_t_ptr, "\x01y\x00\x00", 4); /* a name, then a stray byte */
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_ptr, q, &rcode, &rr, &n, &err), -EPROTO);
    /* records of another type are skipped, even malformed */
    msg_start(&m, "x.dpr.test", ns_t_ptr, 0, true);
    add_raw(&m, "x.dpr.test", ns_t_a, "\x0a", 1);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_ptr, q, &rcode, &rr, &n, &err), 0);
    CHECK_EQ_U64(n, 0);
    free(rr);
    CHECK_EQ_INT(dpr_dnsrec_answers(m.buf, m.len, ns_t_cname, q, &rcode, &rr, &n, &err),
                 -EINVAL);
}

/* ---- messages ----------------------------------------------------------------------- */

TEST(no_agents_messages)
{
    dpr_dnsrec_list l = {0};
    dpr_err err = DPR_ERR_INIT;
    const char *g1[] = {"txtvers=1", "cluster=green", "node=n1", NULL};
    const char *b2[] = {"txtvers=1", "cluster=blue", "node=n2", NULL};
    const char *b1[] = {"txtvers=1", "cluster=blue", "node=n1", NULL};
    const char *f[] = {"txtvers=2", "cluster=blue", "node=n9", NULL};
    svc_with(&l, DPR_DISCOVER_AGENT, "n1@green", g1);
    svc_with(&l, DPR_DISCOVER_AGENT, "n2@blue", b2);
    svc_with(&l, DPR_DISCOVER_AGENT, "n1@blue", b1);
    svc_with(&l, DPR_DISCOVER_AGENT, "n9@blue", f);
    dpr_dnsrec_sort(l.v, l.n);
    dpr_dnsrec_no_agents_message("red", "dpr.test", 3000, "127.0.0.1:5300", l.v, l.n, &err);
    CHECK_EQ_INT(err.code, -ENOENT);
    CHECK(!strcmp(err.msg, "no dpr-agent of cluster 'red' found in domain 'dpr.test' (unicast "
                           "DNS-SD, DNS server 127.0.0.1:5300); seen instead: agents of cluster "
                           "'blue' (n1, n2); cluster 'green' (n1); 1 agent record(s) of another "
                           "TXT format (txtvers not 1), ignored"));
    dpr_dnsrec_no_agents_message("blue", "dpr.test", 3000, NULL, l.v, l.n, &err);
    CHECK(!strcmp(err.msg, "no dpr-agent of cluster 'blue' found in domain 'dpr.test' (unicast "
                           "DNS-SD, DNS server of the system's resolver); seen instead: agents "
                           "of cluster 'green' (n1); 1 agent record(s) of another TXT format "
                           "(txtvers not 1), ignored"));
    dpr_dnsrec_no_agents_message("demo", "dpr.test", 3000, NULL, NULL, 0, &err);
    CHECK(strstr(err.msg, "no _dpr-agent._tcp records there: load the cluster's records into "
                          "the zone (dprctl dns-zone demo --domain dpr.test)") != NULL);
    dpr_dnsrec_no_agents_message("demo", "local", 1500, NULL, NULL, 0, &err);
    CHECK(strstr(err.msg, "no dpr-agent of cluster 'demo' found in domain 'local' (mDNS through "
                          "avahi-daemon, 1.5s); none at all: are the agents and avahi-daemon "
                          "running?") == err.msg);
    dpr_dnsrec_list_free(&l);
}

/* ---- the public API's argument checks (no I/O happens) ------------------------------- */

TEST(api_argument_errors)
{
    dpr_discovered *d = (dpr_discovered *)1;
    dpr_client *c = (dpr_client *)1;
    dpr_err err = DPR_ERR_INIT;
    const char *bad_type[] = {"_dpr-agent"};
    const char *agent[] = {DPR_DISCOVER_AGENT};
    dpr_discover_config cfg = {.domain = "dpr.test", .nameserver = "ns.example.com"};

    CHECK_EQ_INT(dpr_discover_browse(bad_type, 1, NULL, NULL, &d, &err), -EINVAL);
    CHECK(d == NULL && strstr(err.msg, "expected _name._tcp") != NULL);
    CHECK_EQ_INT(dpr_discover_browse(agent, 0, NULL, NULL, &d, &err), -EINVAL);
    CHECK_EQ_INT(dpr_discover_browse(agent, 1, NULL, &cfg, &d, &err), -EINVAL);
    CHECK(strstr(err.msg, "nameserver 'ns.example.com': expected an IP address") != NULL);
    cfg.domain = "local";
    cfg.nameserver = "127.0.0.1";
    CHECK_EQ_INT(dpr_discover_browse(agent, 1, NULL, &cfg, &d, &err), -EINVAL);
    CHECK(strstr(err.msg, "a nameserver is for unicast DNS-SD") != NULL);
    cfg.domain = "bad domain";
    CHECK_EQ_INT(dpr_discover_agents("demo", false, &cfg, &d, &err), -EINVAL);
    CHECK(strstr(err.msg, "domain 'bad domain'") != NULL);
    cfg.domain = "dpr.test";
    cfg.timeout_ms = -1;
    CHECK_EQ_INT(dpr_discover_agents("demo", false, &cfg, &d, &err), -EINVAL);
    CHECK_EQ_INT(dpr_discover_agents("", false, NULL, &d, &err), -EINVAL);
    dpr_endpoint shard = {"127.0.0.1", 7100, false, 0};
    dpr_client_config cc = {.shards = &shard, .nshards = 1};
    CHECK_EQ_INT(dpr_client_discover("demo", "kv", NULL, &cc, &c, &err), -EINVAL);
    CHECK(c == NULL && strstr(err.msg, "come from discovery") != NULL);
    CHECK_EQ_INT(dpr_client_discover("demo", "", NULL, NULL, &c, &err), -EINVAL);
    CHECK(dpr_discovered_count(NULL) == 0 && dpr_discovered_get(NULL, 0) == NULL);
    dpr_discovered_free(NULL);
}

int main(void)
{
    RUN(txt_strings);
    RUN(keep_and_sort);
    RUN(endpoints);
    RUN(domains_nameservers_types);
    RUN(ptr_srv_txt_a_answers);
    RUN(bad_answers);
    RUN(no_agents_messages);
    RUN(api_argument_errors);
    return check_summary("discover");
}
