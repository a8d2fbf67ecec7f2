/*
 * fuzz_discover.c - libFuzzer target for libdpr-discover's parsers
 * (libdpr/discover/dnsrec.h): DNS answers as a server sends them and TXT
 * records.
 *
 * The input is a DNS message: its question's name and type (and, for PTR,
 * the instance names below it) are looked for in its answers as the
 * unicast browse does; the same bytes are also read as a TXT record's RDATA
 * and as a domain and a nameserver. Checks: only documented return codes;
 * records of the type asked only, every name printable back to text,
 * instance labels without NUL; TXT keys in lower case and each once, and
 * an endpoint, when there is one, that fits.
 */
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "dnsrec.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_answers(const uint8_t *data, size_t size)
{
    ns_msg m;
    ns_rr q;
    uint8_t qname[DPR_DNSREC_NAME_MAX];
    dpr_dnsrec_rr *rr;
    size_t n;
    int rcode, r;
    dpr_err err = DPR_ERR_INIT;

    if (size > 65535 || ns_initparse(data, (int)size, &m) < 0 || ns_msg_count(m, ns_s_qd) < 1 ||
        ns_parserr(&m, ns_s_qd, 0, &q) < 0 ||
        dpr_dnsrec_name_wire(ns_rr_name(q), qname, sizeof(qname)) < 0)
        return;
    static const uint16_t types[] = {ns_t_ptr, ns_t_srv, ns_t_txt, ns_t_a, ns_t_aaaa};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        r = dpr_dnsrec_answers(data, size, types[t], qname, &rcode, &rr, &n, &err);
        REQUIRE(r == 0 || r == -EPROTO || r == -ENOMEM);
        if (r < 0) {
            REQUIRE(rr == NULL && n == 0 && err.msg[0]);
            continue;
        }
        REQUIRE(rcode >= 0 && rcode <= 15 && n <= ns_msg_count(m, ns_s_an));
        for (size_t i = 0; i < n; i++) {
            char text[1200], label[DPR_DNSREC_LABEL_MAX + 1];
            REQUIRE(rr[i].type == types[t]);
            if (types[t] == ns_t_ptr || types[t] == ns_t_srv) {
                REQUIRE(dpr_dnsrec_name_text(rr[i].target, text, sizeof(text)) == 0);
                int lr = dpr_dnsrec_instance_label(rr[i].target, qname, label, sizeof(label));
                REQUIRE(lr == 0 || lr == -ENOENT || lr == -EINVAL);
                if (lr == 0)
                    REQUIRE(strlen(label) == rr[i].target[0]);
            }
            if (types[t] == ns_t_txt) {
                dpr_dnsrec_list l = {0};
                dpr_dnsrec_svc *s;
                REQUIRE(dpr_dnsrec_svc_new(&l, DPR_DISCOVER_AGENT, "x", "d", &s) == 0);
                REQUIRE(dpr_dnsrec_txt_rdata(s, rr[i].rdata, rr[i].rdlen) == 0);
                dpr_dnsrec_list_free(&l);
            }
            if (types[t] == ns_t_a || types[t] == ns_t_aaaa)
                REQUIRE(rr[i].addr[0] != '\0');
        }
        free(rr);
    }
}

static void check_txt(const uint8_t *data, size_t size)
{
    dpr_dnsrec_list l = {0};
    dpr_dnsrec_svc *s;
    char ep[300];

    REQUIRE(dpr_dnsrec_svc_new(&l, DPR_DISCOVER_CACHESTORE, "kv-0@demo", "local", &s) == 0);
    REQUIRE(dpr_dnsrec_txt_rdata(s, data, size) == 0);
    dpr_dnsrec_svc_finish(s);
    for (size_t i = 0; i < s->ntxt; i++) {
        REQUIRE(s->keys[i][0] != '\0');
        for (const char *k = s->keys[i]; *k; k++)
            REQUIRE(!(*k >= 'A' && *k <= 'Z') && *k != '=');
        for (size_t j = 0; j < i; j++)
            REQUIRE(strcmp(s->keys[i], s->keys[j]) != 0);
        REQUIRE(dpr_dnsrec_txt_get(s, s->keys[i]) == s->vals[i]);
    }
    int r = dpr_dnsrec_endpoint(s, ep, sizeof(ep));
    REQUIRE(r == 0 || r == -ENOENT || r == -ENAMETOOLONG);
    if (r == 0)
        REQUIRE(strlen(ep) < sizeof(ep));
    (void)dpr_dnsrec_keep(s, "demo");
    dpr_dnsrec_sort(l.v, l.n);
    dpr_dnsrec_list_free(&l);
}

static void check_args(const uint8_t *data, size_t size)
{
    char text[300], out[256];
    struct sockaddr_storage ss;
    socklen_t len;
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    int r = dpr_dnsrec_check_domain(text, out, sizeof(out), NULL);
    REQUIRE(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
    if (r == 0)
        REQUIRE(strlen(out) <= 253 && out[0] && out[strlen(out) - 1] != '.');
    r = dpr_dnsrec_parse_nameserver(text, &ss, &len, NULL);
    REQUIRE(r == 0 || r == -EINVAL);
    if (r == 0)
        REQUIRE(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    (void)dpr_dnsrec_valid_type(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_answers(data, size);
    check_txt(data, size);
    check_args(data, size);
    return 0;
}
