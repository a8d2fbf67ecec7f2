/* main.c - dpr-finder: the standalone DPR finder with a local state file. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/addr.h"
#include "common/log.h"
#include "common/num.h"
#include "common/version.h"
#include "dpr/domains.h"
#include "dpr/finder_server.h"
#include "dpr/store.h"

static void usage(FILE *out)
{
    fprintf(out,
"Usage: dpr-finder --listen ADDR:PORT --state DIR [options]\n"
"\n"
"The DPR finder: workers register and report durable checkpoints, the finder\n"
"computes the DPR cut and the world-line of each DPR domain and keeps them in\n"
"DIR. Every command names its domain (\"default\" for tools without one of their\n"
"own). It speaks RESP, so redis-cli can drive it (see docs/protocol.md,\n"
"\"Finder commands\").\n"
"\n"
"Options:\n"
"  -l, --listen ADDR:PORT      address to listen on: an IPv4 address, a host name,\n"
"                              [IPv6], or * for every address; PORT 0 picks a free\n"
"                              port (the one chosen is printed)\n"
"  -s, --state DIR             state directory (created if missing): finder.state\n"
"                              and finder.lock; one finder per directory\n"
"  -c, --max-clients N         connections served at once (default %d); more are\n"
"                              answered with an error and closed\n"
"  -m, --max-request-bytes N   largest request accepted, in bytes of its RESP\n"
"                              encoding (default %u, at least %d); a larger one is\n"
"                              answered with an error and its connection closed\n"
"  --port N                    the port of --listen's address; 0: no plain\n"
"                              listener (TLS only, with --tls-port)\n"
"  --tls-port N                serve over TLS on --listen's host, port N (0 picks a\n"
"                              free one); there, commands are authorized by the\n"
"                              client's certificate: node certificates may run all,\n"
"                              others only DPR.SYNC, DPR.PREFIX, DPR.DOMAINS, PING\n"
"  --tls-cert-file PATH        the finder's certificate (PEM), with --tls-port\n"
"  --tls-key-file PATH         its key (PEM)\n"
"  --tls-ca-cert-file PATH     the CA clients' certificates are checked against\n"
"  --tls-auth-clients yes|optional|no\n"
"                              a client certificate is required (default), checked\n"
"                              when shown, or not asked for\n"
"  --tls-crl-file PATH         the CA's CRL (PEM): revoked certificates are refused\n"
"  --tls-cluster NAME          refuse certificates of another cluster (their\n"
"                              dpr://NAME/... URI)\n"
"  --metrics-address HOST:PORT serve Prometheus metrics at http://HOST:PORT/metrics\n"
"                              (port 0 picks a free one, logged as 'metrics on ...')\n"
"  --metrics-no-workers        leave the per-worker series (dpr_finder_worker_*) out\n"
"                              of the page: three a worker, ~13 MB at 65k workers\n"
"  -h, --help                  show this help and exit\n"
"      --version               print the version and exit\n"
"\n"
"On start the state in DIR is loaded; without one the finder starts fresh (no\n"
"domains; a domain starts at world-line 1 with its first worker). A corrupt or unreadable state file is an error:\n"
"the finder stops and never starts over, since that would lose committed data.\n"
"Logs \"dpr-finder listening on ADDR:PORT\" (on stderr) when ready, and\n"
"\"... (TLS, client certificates: MODE)\" for the TLS port. SIGHUP reads the\n"
"TLS files again for new connections. SIGTERM or SIGINT stop it cleanly\n"
"(exit 0). Exit status 1 on any error, 2 on bad usage (docs/tls.md).\n",
            DPR_SERVER_DEFAULT_MAX_CLIENTS, DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES,
            DPR_SERVER_MIN_REQUEST_BYTES);
}

/* A flag's value: decimal in [min, max] (common/num.h). */
static int parse_size(const char *s, size_t min, size_t max, size_t *out)
{
    uint64_t v;
    int rc = dpr_parse_u64_str(s, min, max, &v);

    if (rc == 0)
        *out = (size_t)v;
    return rc;
}

/* Room for max_clients sockets plus the few files of our own. */
static void raise_fd_limit(size_t max_clients)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_clients + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        log_warning("open file limit %llu is below --max-clients %zu + 64",
                    (unsigned long long)rl.rlim_cur, max_clients);
}

/* Loads the stored state or starts fresh; never starts over on damage. */
static int open_domains(dpr_store *store, const char *dir, dpr_domains **out)
{
    dpr_domains_state st = { .domains = NULL };
    size_t nworkers = 0;
    int rc = dpr_store_load(store, &st);

    if (rc == -ENOENT) {
        rc = dpr_domains_new(out);
        if (rc < 0) {
            log_error("cannot create the finder: %s", strerror(-rc));
            return rc;
        }
        log_info("no state in %s, starting fresh (no domains yet)", dir);
        return 0;
    }
    if (rc < 0) {
        log_error("cannot load the state: %s", dpr_store_error(store));
        log_error("refusing to start: starting over would lose committed data; repair or "
                  "restore %s/finder.state", dir);
        return rc;
    }
    rc = dpr_domains_restore(&st, out);
    if (rc < 0) {
        log_error("cannot restore the state from %s/finder.state: %s", dir, strerror(-rc));
    } else {
        for (size_t i = 0; i < st.n; i++) {
            log_info("domain %s: restored world-line %llu with %zu workers",
                     st.domains[i].name, (unsigned long long)st.domains[i].state.world_line,
                     st.domains[i].state.nworkers);
            nworkers += st.domains[i].state.nworkers;
        }
        log_info("restored %zu domains with %zu workers from %s", st.n, nworkers, dir);
    }
    dpr_domains_state_free(&st);
    return rc;
}

enum {
    OPT_PORT = 256,
    OPT_TLS_PORT,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CA,
    OPT_TLS_AUTH,
    OPT_TLS_CRL,
    OPT_TLS_CLUSTER,
    OPT_METRICS,
    OPT_METRICS_NO_WORKERS,
};

/* "HOST:PORT" of --listen's host with another port (IPv6 in brackets). */
static int with_port(const dpr_hostport *hp, size_t port, char *out, size_t cap)
{
    int n = snprintf(out, cap, strchr(hp->host, ':') ? "[%s]:%zu" : "%s:%zu",
                     hp->host[0] ? hp->host : "*", port);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* Contradicting TLS flags: the message, or NULL. */
static const char *check_tls(const dpr_server_config *cfg, bool tls)
{
    if (cfg->plain_off && !tls)
        return "--port 0 turns the plain listener off: give --tls-port too";
    if (!tls && (cfg->tls.cert_file || cfg->tls.key_file || cfg->tls.ca_file))
        return "--tls-* files need --tls-port";
    if (tls && (!cfg->tls.cert_file || !cfg->tls.key_file))
        return "--tls-port needs --tls-cert-file and --tls-key-file";
    if (tls && cfg->tls.verify != DPR_TLS_VERIFY_NONE && !cfg->tls.ca_file)
        return "--tls-auth-clients yes|optional needs --tls-ca-cert-file";
    if (cfg->tls.cluster && cfg->tls.verify == DPR_TLS_VERIFY_NONE)
        return "--tls-cluster needs --tls-auth-clients yes or optional";
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "state", required_argument, NULL, 's' },
        { "max-clients", required_argument, NULL, 'c' },
        { "max-request-bytes", required_argument, NULL, 'm' },
        { "port", required_argument, NULL, OPT_PORT },
        { "tls-port", required_argument, NULL, OPT_TLS_PORT },
        { "tls-cert-file", required_argument, NULL, OPT_TLS_CERT },
        { "tls-key-file", required_argument, NULL, OPT_TLS_KEY },
        { "tls-ca-cert-file", required_argument, NULL, OPT_TLS_CA },
        { "tls-auth-clients", required_argument, NULL, OPT_TLS_AUTH },
        { "tls-crl-file", required_argument, NULL, OPT_TLS_CRL },
        { "tls-cluster", required_argument, NULL, OPT_TLS_CLUSTER },
        { "metrics-address", required_argument, NULL, OPT_METRICS },
        { "metrics-no-workers", no_argument, NULL, OPT_METRICS_NO_WORKERS },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    dpr_server_config cfg = { .max_clients = DPR_SERVER_DEFAULT_MAX_CLIENTS,
                              .max_request_bytes = DPR_SERVER_DEFAULT_MAX_REQUEST_BYTES,
                              .tls = { .verify = DPR_TLS_VERIFY_REQUIRED } };
    char plain_listen[DPR_ADDR_STR_MAX + 16], tls_listen[DPR_ADDR_STR_MAX + 16];
    size_t port = SIZE_MAX, tls_port = SIZE_MAX;
    const char *bad;
    const char *state = NULL;
    struct sockaddr_storage ss;
    dpr_hostport hp;
    dpr_err err = DPR_ERR_INIT;
    dpr_store *store = NULL;
    dpr_domains *ds = NULL;
    int opt, rc, status = 1;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":l:s:c:m:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            cfg.listen = optarg;
            break;
        case 's':
            state = optarg;
            break;
        case 'c':
            if (parse_size(optarg, 1, 1000000, &cfg.max_clients) < 0) {
                fprintf(stderr, "dpr-finder: --max-clients: '%s' is not a number in "
                        "1..1000000\n", optarg);
                return 2;
            }
            break;
        case 'm':
            if (parse_size(optarg, DPR_SERVER_MIN_REQUEST_BYTES, (size_t)1 << 30,
                           &cfg.max_request_bytes) < 0) {
                fprintf(stderr, "dpr-finder: --max-request-bytes: '%s' is not a number in "
                        "%d..%zu\n", optarg, DPR_SERVER_MIN_REQUEST_BYTES, (size_t)1 << 30);
                return 2;
            }
            break;
        case OPT_PORT:
        case OPT_TLS_PORT:
            if (parse_size(optarg, 0, 65535, opt == OPT_PORT ? &port : &tls_port) < 0) {
                fprintf(stderr, "dpr-finder: --%s: '%s' is not a port number\n",
                        opt == OPT_PORT ? "port" : "tls-port", optarg);
                return 2;
            }
            break;
        case OPT_TLS_CERT:
            cfg.tls.cert_file = optarg;
            break;
        case OPT_TLS_KEY:
            cfg.tls.key_file = optarg;
            break;
        case OPT_TLS_CA:
            cfg.tls.ca_file = optarg;
            break;
        case OPT_TLS_CRL:
            cfg.tls.crl_file = optarg;
            break;
        case OPT_METRICS:
            if (dpr_hostport_parse(optarg, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, &err) < 0) {
                fprintf(stderr, "dpr-finder: --metrics-address: %s\n", err.msg);
                return 2;
            }
            cfg.metrics_listen = optarg;
            break;
        case OPT_METRICS_NO_WORKERS:
            cfg.metrics_no_workers = true;
            break;
        case OPT_TLS_CLUSTER:
            cfg.tls.cluster = optarg;
            break;
        case OPT_TLS_AUTH:
            if (dpr_tls_verify_parse(optarg, &cfg.tls.verify) < 0) {
                fprintf(stderr, "dpr-finder: --tls-auth-clients: '%s' is not yes, optional "
                        "or no\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("dpr-finder %s\n", DPR_VERSION);
            return 0;
        case ':':
            fprintf(stderr, "dpr-finder: option '%s' needs a value (see --help)\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "dpr-finder: unknown option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dpr-finder: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!cfg.listen || !state) {
        fprintf(stderr, "dpr-finder: --listen and --state are required (see --help)\n");
        return 2;
    }
    if (dpr_hostport_parse(cfg.listen, DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, &err) < 0 ||
        dpr_hostport_resolve(&hp, true, &ss, NULL, &err) < 0) {
        fprintf(stderr, "dpr-finder: --listen: %s\n", err.msg);
        return 2;
    }
    cfg.plain_off = port == 0;
    if (port != SIZE_MAX && port) {
        if (with_port(&hp, port, plain_listen, sizeof(plain_listen)) < 0) {
            fprintf(stderr, "dpr-finder: --listen: host name too long\n");
            return 2;
        }
        cfg.listen = plain_listen;
    }
    if (tls_port != SIZE_MAX) {
        if (with_port(&hp, tls_port, tls_listen, sizeof(tls_listen)) < 0) {
            fprintf(stderr, "dpr-finder: --listen: host name too long\n");
            return 2;
        }
        cfg.tls_listen = tls_listen;
    }
    bad = check_tls(&cfg, tls_port != SIZE_MAX);
    if (bad) {
        fprintf(stderr, "dpr-finder: %s (see --help)\n", bad);
        return 2;
    }

    dpr_log_open("dpr-finder", false);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg.max_clients);

    rc = dpr_store_file_open(state, &store, &err);
    if (rc < 0) {
        log_error("%s", dpr_err_str(&err, rc));
        goto out;
    }
    if (open_domains(store, state, &ds) < 0)
        goto out;
    rc = dpr_server_run(ds, store, &cfg);
    if (rc == 0) {
        log_info("stopped");
        status = 0;
    }
out:
    dpr_domains_free(ds);
    dpr_store_close(store);
    return status;
}
