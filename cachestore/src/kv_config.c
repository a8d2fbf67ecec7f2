/* kv_config.c - see kv_config.h. */
#include "kv_config.h"

#include "common/addr.h"
#include "common/finders.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/num.h"
#include "common/version.h"

const char *kv_config_program = "dpr-kv";
const char *kv_config_usage = NULL;

static const char usage[] =
    "Usage: dpr-kv [options]\n"
    "\n"
    "A Redis-protocol (RESP2) key-value cache-store with Distributed Prefix\n"
    "Recovery: checkpoints every few milliseconds, reports them to a DPR finder,\n"
    "restores and rolls back as the finder says. redis-cli, redis-py and\n"
    "redis-benchmark work unchanged; DPR sessions use DPR.BATCH (docs/dpr-kv.md).\n"
    "\n"
    "Options (each also from the environment variable shown; a flag wins):\n"
    "  --listen ADDR:PORT          where to serve RESP (DPR_KV_LISTEN;\n"
    "                              default 127.0.0.1:6379; port 0 picks a free port,\n"
    "                              logged as 'listening on ...')\n"
    "  --port N                    the port of --listen's address (DPR_KV_PORT); 0: no\n"
    "                              plain listener (TLS only, with --tls-port)\n"
    "  --tls-port N                serve RESP over TLS on --listen's host, port N\n"
    "                              (DPR_KV_TLS_PORT; default 0 = no TLS). Redis' TLS\n"
    "                              options (docs/tls.md); SIGHUP (systemctl reload)\n"
    "                              loads the files again for new connections\n"
    "  --tls-cert-file PATH        the server's certificate, PEM (DPR_KV_TLS_CERT_FILE)\n"
    "  --tls-key-file PATH         its private key, PEM (DPR_KV_TLS_KEY_FILE)\n"
    "  --tls-ca-cert-file PATH     CA certificates clients' certificates are checked\n"
    "                              against (DPR_KV_TLS_CA_CERT_FILE)\n"
    "  --tls-auth-clients yes|no|optional  whether clients must show a certificate of\n"
    "                              that CA (DPR_KV_TLS_AUTH_CLIENTS; default yes)\n"
    "  --tls-crl-file PATH         a CRL of that CA, PEM: revoked client certificates\n"
    "                              are refused (DPR_KV_TLS_CRL_FILE; default none)\n"
    "  --finder-tls                talk to the finder over TLS (DPR_KV_FINDER_TLS):\n"
    "                              --tls-cert-file/--tls-key-file are this node's\n"
    "                              client certificate, the finder's is checked\n"
    "                              against --tls-ca-cert-file and the finder's host\n"
    "  --finder HOST:PORT[,...]    the DPR finder (DPR_KV_FINDER; required); in a\n"
    "                              cluster any agents' finder addresses: the one\n"
    "                              that is not the leader names it (NOTLEADER)\n"
    "  --domain NAME               the DPR domain (deployment) this shard belongs to\n"
    "                              (DPR_KV_DOMAIN; default 'default'): 1 to 63\n"
    "                              characters of a-z 0-9 . _ -, starting with a letter\n"
    "                              or digit. The domain has its own world-lines, cut\n"
    "                              and recovery: every finder command names it, and\n"
    "                              batches of sessions of other domains are refused\n"
    "  --finder-token-file PATH    a file holding this worker's registration token\n"
    "                              (1 to 128 visible ASCII characters; one trailing\n"
    "                              newline is ignored). The token may instead come from\n"
    "                              DPR_KV_FINDER_TOKEN itself (the agent writes it in the\n"
    "                              instance file); the file wins. Once a worker has\n"
    "                              registered with a token, the finder re-registers or\n"
    "                              removes it only for the same token, and refuses\n"
    "                              start-up otherwise (exit status 78). On every\n"
    "                              connection to the finder it is presented first\n"
    "                              (DPR.AUTH) before reports. It is never logged\n"
    "  --worker ID                 this shard's worker id, 64-bit, stable across\n"
    "                              restarts (DPR_KV_WORKER; required)\n"
    "  --dir DIR                   state directory for checkpoints (DPR_KV_DIR;\n"
    "                              default $STATE_DIRECTORY, set by systemd's\n"
    "                              StateDirectory=)\n"
    "  --seed-dir DIR              checkpoints of this worker copied from its previous\n"
    "                              node (the agent's replica copies; DPR_KV_SEED_DIR):\n"
    "                              when the state directory holds no checkpoint at\n"
    "                              start, every ckpt-<v>.kv of DIR is copied into it\n"
    "                              first, then recovery runs as usual. A missing or\n"
    "                              empty DIR is fine (start as without it); one that\n"
    "                              cannot be read is an error\n"
    "  --checkpoint-interval-ms N  checkpoint period (DPR_KV_CHECKPOINT_INTERVAL_MS;\n"
    "                              default 100)\n"
    "  --checkpoint-mode log|full  log (the default): each checkpoint writes what\n"
    "                              changed since the previous one (a change log), and a\n"
    "                              full image is written in the background when the\n"
    "                              logs add up to half the data; full: every checkpoint\n"
    "                              is a full image (a forked child)\n"
    "                              (DPR_KV_CHECKPOINT_MODE)\n"
    "  --checkpoint-log            the same as --checkpoint-mode log\n"
    "                              (DPR_KV_CHECKPOINT_LOG=1; =0 is --checkpoint-mode full)\n"
    "  --checkpoint-compact-bytes N  in log mode: the least change-log bytes\n"
    "                              before a full image (DPR_KV_CHECKPOINT_COMPACT_BYTES;\n"
    "                              default 8mb; Redis' units)\n"
    "  --sync-interval-ms N        how often to ask the finder for the cut\n"
    "                              (DPR_KV_SYNC_INTERVAL_MS; default: the checkpoint\n"
    "                              interval)\n"
    "  --max-clients N             connections served at once; more are refused with\n"
    "                              an error (DPR_KV_MAX_CLIENTS; default 10000)\n"
    "  --replica-socket PATH       in a cluster of agents: the agent's unix socket\n"
    "                              (DPR_KV_REPLICA_SOCKET): each checkpoint is reported\n"
    "                              to the finder only once the agent copied it to the\n"
    "                              shard's replica nodes (DPR.REPLICA.SHIP)\n"
    "  --instance NAME             the instance's name the agent knows it by\n"
    "                              (DPR_KV_INSTANCE; default: the state directory's\n"
    "                              last component)\n"
    "  --max-request-bytes N       largest request, or DPR batch, in bytes; larger\n"
    "                              gets an error and the connection is closed\n"
    "                              (DPR_KV_MAX_REQUEST_BYTES; default 67108864)\n"
    "  --maxmemory BYTES           memory limit, like Redis' maxmemory with the\n"
    "                              noeviction policy: above it, commands that may grow\n"
    "                              the data set get '-OOM command not allowed when used\n"
    "                              memory > 'maxmemory'.'; reads and DEL are served.\n"
    "                              Suffixes k/kb/m/mb/g/gb (1k = 1000, 1kb = 1024)\n"
    "                              (DPR_KV_MAXMEMORY; default 0 = no limit)\n"
    "  --finder-timeout-ms N       give up start-up if the finder cannot be reached\n"
    "                              in N ms (DPR_KV_FINDER_TIMEOUT_MS; default 0 =\n"
    "                              keep trying)\n"
    "  --shutdown-timeout-ms N     on SIGTERM, how long to wait for the last\n"
    "                              checkpoint and its report (DPR_KV_SHUTDOWN_TIMEOUT_MS;\n"
    "                              default 30000)\n"
    "  --reset                     the finder does not know this worker but DIR holds\n"
    "                              checkpoints (a new finder?): delete them and start\n"
    "                              empty instead of refusing to start (DPR_KV_RESET=1)\n"
    "  --await-layout              serve no key until given a layout (DPR.LAYOUT SET or\n"
    "                              a resize): commands with keys get TRYAGAIN until\n"
    "                              then (DPR_KV_AWAIT_LAYOUT=1; the agent sets it)\n"
    "  --metrics-address HOST:PORT serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                              (DPR_KV_METRICS_ADDRESS; default none; port 0 picks\n"
    "                              a free one, logged as 'metrics on ...')\n"
    "  --verbose                   debug logging (DPR_KV_VERBOSE=1)\n"
    "  --help                      this text\n"
"  --version                   print the version and exit\n"
    "\n"
    "Logs go to stderr. Under systemd (Type=notify) it sends READY=1 after recovery,\n"
    "WATCHDOG=1 when WatchdogSec= is set, and STATUS= lines. SIGTERM takes a last\n"
    "checkpoint, reports it and exits 0.\n"
    "\n"
    "Exit status: 0 clean stop; 1 runtime failure (for instance a finder that cannot\n"
    "be reached within --finder-timeout-ms); 2 bad usage; 78 a failure a restart\n"
    "cannot mend (the finder refused this worker's token, a damaged checkpoint, a\n"
    "checkpoint of dpr-redis holding a key dpr-kv cannot hold: of another type than\n"
    "string, or with a TTL, or this incarnation was fenced: the worker moved to\n"
    "another node and the finder answered FENCED).\n"
    "\n"
    "Checkpoints of dpr-redis in --dir (ckpt-V.wWL.rdb: the deployment's impl was\n"
    "switched) are recovered from: read through a private redis-server\n"
    "($DPR_REDIS_SERVER or the one on PATH; its socket in a directory under $TMPDIR\n"
    "or /tmp), written as dpr-kv's own checkpoint, and deleted.\n";

enum {
    OPT_LISTEN = 1000,
    OPT_PORT,
    OPT_TLS_PORT,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CA,
    OPT_TLS_AUTH,
    OPT_TLS_CRL,
    OPT_FINDER,
    OPT_FINDER_TLS,
    OPT_DOMAIN,
    OPT_FINDER_TOKEN_FILE,
    OPT_FINDER_TOKEN,
    OPT_WORKER,
    OPT_DIR,
    OPT_SEED_DIR,
    OPT_INTERVAL,
    OPT_SYNC,
    OPT_MAX_CLIENTS,
    OPT_REPLICA_SOCKET,
    OPT_INSTANCE,
    OPT_MAX_REQUEST,
    OPT_MAXMEMORY,
    OPT_FINDER_TIMEOUT,
    OPT_SHUTDOWN_TIMEOUT,
    OPT_RESET,
    OPT_AWAIT_LAYOUT,
    OPT_CKPT_LOG,
    OPT_CKPT_MODE,
    OPT_COMPACT_BYTES,
    OPT_METRICS,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_VERSION,
};

typedef struct opt_def {
    const char *name;
    const char *env;
    int id;
    int has_arg;
} opt_def;

static const opt_def opts[] = {
    {"listen", "DPR_KV_LISTEN", OPT_LISTEN, 1},
    {"port", "DPR_KV_PORT", OPT_PORT, 1},
    {"tls-port", "DPR_KV_TLS_PORT", OPT_TLS_PORT, 1},
    {"tls-cert-file", "DPR_KV_TLS_CERT_FILE", OPT_TLS_CERT, 1},
    {"tls-key-file", "DPR_KV_TLS_KEY_FILE", OPT_TLS_KEY, 1},
    {"tls-ca-cert-file", "DPR_KV_TLS_CA_CERT_FILE", OPT_TLS_CA, 1},
    {"tls-auth-clients", "DPR_KV_TLS_AUTH_CLIENTS", OPT_TLS_AUTH, 1},
    {"tls-crl-file", "DPR_KV_TLS_CRL_FILE", OPT_TLS_CRL, 1},
    {"finder", "DPR_KV_FINDER", OPT_FINDER, 1},
    {"finder-tls", "DPR_KV_FINDER_TLS", OPT_FINDER_TLS, 0},
    {"domain", "DPR_KV_DOMAIN", OPT_DOMAIN, 1},
    {"finder-token-file", NULL, OPT_FINDER_TOKEN_FILE, 1},
    /* no flag: a token on the command line would show in ps */
    {NULL, "DPR_KV_FINDER_TOKEN", OPT_FINDER_TOKEN, 1},
    {"worker", "DPR_KV_WORKER", OPT_WORKER, 1},
    {"dir", "DPR_KV_DIR", OPT_DIR, 1},
    {"seed-dir", "DPR_KV_SEED_DIR", OPT_SEED_DIR, 1},
    {"checkpoint-interval-ms", "DPR_KV_CHECKPOINT_INTERVAL_MS", OPT_INTERVAL, 1},
    {"sync-interval-ms", "DPR_KV_SYNC_INTERVAL_MS", OPT_SYNC, 1},
    {"max-clients", "DPR_KV_MAX_CLIENTS", OPT_MAX_CLIENTS, 1},
    {"replica-socket", "DPR_KV_REPLICA_SOCKET", OPT_REPLICA_SOCKET, 1},
    {"instance", "DPR_KV_INSTANCE", OPT_INSTANCE, 1},
    {"max-request-bytes", "DPR_KV_MAX_REQUEST_BYTES", OPT_MAX_REQUEST, 1},
    {"maxmemory", "DPR_KV_MAXMEMORY", OPT_MAXMEMORY, 1},
    {"finder-timeout-ms", "DPR_KV_FINDER_TIMEOUT_MS", OPT_FINDER_TIMEOUT, 1},
    {"shutdown-timeout-ms", "DPR_KV_SHUTDOWN_TIMEOUT_MS", OPT_SHUTDOWN_TIMEOUT, 1},
    {"reset", "DPR_KV_RESET", OPT_RESET, 0},
    {"await-layout", "DPR_KV_AWAIT_LAYOUT", OPT_AWAIT_LAYOUT, 0},
    {"checkpoint-log", "DPR_KV_CHECKPOINT_LOG", OPT_CKPT_LOG, 0},
    {"checkpoint-mode", "DPR_KV_CHECKPOINT_MODE", OPT_CKPT_MODE, 1},
    {"checkpoint-compact-bytes", "DPR_KV_CHECKPOINT_COMPACT_BYTES", OPT_COMPACT_BYTES, 1},
    {"metrics-address", "DPR_KV_METRICS_ADDRESS", OPT_METRICS, 1},
    {"verbose", "DPR_KV_VERBOSE", OPT_VERBOSE, 0},
    {"help", NULL, OPT_HELP, 0},
    {"version", NULL, OPT_VERSION, 0},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Decimal digits (leading zeros allowed, as ever in these flags), at most max:
 * 0, -EINVAL or -ERANGE. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    while (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
        s++;
    return dpr_parse_u64_str(s, 0, max, out);
}

/* A number of bytes as Redis' memtoull reads it: digits, then an optional
 * unit b, k, kb, m, mb, g, gb (any case; k = 1000, kb = 1024). 0, -EINVAL or
 * -ERANGE. */
static int parse_bytes(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {
        {"", 1}, {"b", 1}, {"k", 1000}, {"kb", 1024}, {"m", 1000 * 1000}, {"mb", 1024 * 1024},
        {"g", 1000 * 1000 * 1000}, {"gb", (uint64_t)1024 * 1024 * 1024},
    };
    size_t digits = strspn(s, "0123456789");
    char num[32];
    uint64_t v;
    int r;

    if (digits == 0 || digits >= sizeof(num))
        return digits ? -ERANGE : -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(s + digits, units[i].unit) != 0)
            continue;
        memcpy(num, s, digits);
        num[digits] = '\0';
        r = parse_u64(num, UINT64_MAX / units[i].mul, &v);
        if (r == 0)
            *out = v * units[i].mul;
        return r;
    }
    return -EINVAL;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "off") || !*s) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap)
        return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

/* A registration token: 1..KV_FINDER_TOKEN_MAX characters in 0x21..0x7e. */
static bool token_ok(const char *s, size_t n)
{
    if (n < 1 || n > KV_FINDER_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* Reads the token from path into c->finder_token. Messages never show it. */
static int read_token_file(kv_config *c, const char *path, dpr_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0) {
        r = -errno;
        return dpr_err_set(err, r, "--finder-token-file %s: %s", path, strerror(-r));
    }
    r = dpr_read_fd(fd, 4096, &data, &len);
    close(fd);
    if (r < 0)
        return dpr_err_set(err, r, "--finder-token-file %s: %s", path,
                           r == -EFBIG ? "larger than a token can be" : strerror(-r));
    if (len > 0 && data[len - 1] == '\n')
        len--;
    if (len > 0 && data[len - 1] == '\r')
        len--;
    if (!token_ok(data, len)) {
        explicit_bzero(data, len);
        free(data);
        return dpr_err_set(err, -EINVAL, "--finder-token-file %s: the token must be 1 to %d "
                           "visible ASCII characters (no spaces)", path, KV_FINDER_TOKEN_MAX);
    }
    memcpy(c->finder_token, data, len);
    c->finder_token[len] = '\0';
    explicit_bzero(data, len);
    free(data);
    return 0;
}

/* Applies one setting; 0, or -EINVAL / -ERANGE with a message. */
static int apply(kv_config *c, const opt_def *o, const char *val, const char *from, dpr_err *err)
{
    uint64_t v = 0;
    int r = 0;

    switch (o->id) {
    case OPT_LISTEN:
        r = copy_str(c->listen, sizeof(c->listen), val);
        break;
    case OPT_METRICS: {
        dpr_hostport hp;
        if (!*val) {
            c->metrics_address[0] = '\0'; /* empty: none */
            break;
        }
        if (dpr_hostport_parse(val, DPR_HOSTPORT_PORT0 | DPR_HOSTPORT_ANY, &hp, err) < 0) {
            dpr_err_prefix(err, "%s", from);
            return -EINVAL;
        }
        r = copy_str(c->metrics_address, sizeof(c->metrics_address), val);
        break;
    }
    case OPT_PORT:
        r = parse_u64(val, 65535, &v);
        c->port = (int)v;
        break;
    case OPT_TLS_PORT:
        r = parse_u64(val, 65535, &v);
        c->tls_port = (unsigned)v;
        break;
    case OPT_TLS_CERT:
        r = copy_str(c->tls_cert_file, sizeof(c->tls_cert_file), val);
        break;
    case OPT_TLS_KEY:
        r = copy_str(c->tls_key_file, sizeof(c->tls_key_file), val);
        break;
    case OPT_TLS_CA:
        r = copy_str(c->tls_ca_cert_file, sizeof(c->tls_ca_cert_file), val);
        break;
    case OPT_TLS_CRL:
        if (!*val) {
            c->tls_crl_file[0] = '\0'; /* empty: none */
            break;
        }
        r = copy_str(c->tls_crl_file, sizeof(c->tls_crl_file), val);
        break;
    case OPT_TLS_AUTH:
        r = dpr_tls_verify_parse(val, &c->tls_auth_clients);
        break;
    case OPT_FINDER: {
        dpr_finders fl;
        if (dpr_finders_parse(val, &fl, err) < 0) {
            dpr_err_prefix(err, "invalid value for %s", from);
            return -EINVAL;
        }
        r = copy_str(c->finder, sizeof(c->finder), val);
        break;
    }
    case OPT_DOMAIN:
        if (!dpr_domain_valid(val, strlen(val)))
            return dpr_err_set(err, -EINVAL, "invalid value '%s' for %s: a domain name is 1 to %d "
                               "characters of a-z, 0-9, '.', '_' and '-', starting with a "
                               "letter or digit", val, from, DPR_DOMAIN_MAX);
        memcpy(c->domain, val, strlen(val) + 1);
        break;
    case OPT_FINDER_TOKEN_FILE:
        return read_token_file(c, val, err);
    case OPT_FINDER_TOKEN:
        if (!*val) {
            c->finder_token[0] = '\0'; /* empty: none */
            break;
        }
        if (!token_ok(val, strlen(val)))
            return dpr_err_set(err, -EINVAL, "%s: the token must be 1 to %d visible ASCII "
                               "characters (no spaces)", from, KV_FINDER_TOKEN_MAX);
        memcpy(c->finder_token, val, strlen(val) + 1);
        break;
    case OPT_WORKER:
        r = parse_u64(val, UINT64_MAX, &c->worker);
        c->worker_set = r == 0;
        break;
    case OPT_DIR:
        r = copy_str(c->dir, sizeof(c->dir), val);
        break;
    case OPT_SEED_DIR:
        if (!*val) {
            c->seed_dir[0] = '\0'; /* empty: none */
            break;
        }
        r = copy_str(c->seed_dir, sizeof(c->seed_dir), val);
        break;
    case OPT_REPLICA_SOCKET:
        if (!*val) {
            c->replica_socket[0] = '\0'; /* empty: none */
            break;
        }
        if (*val != '/')
            return dpr_err_set(err, -EINVAL, "%s: the replica socket must be an absolute "
                               "path (got '%s')", from, val);
        r = copy_str(c->replica_socket, sizeof(c->replica_socket), val);
        break;
    case OPT_INSTANCE:
        r = copy_str(c->instance, sizeof(c->instance), val);
        break;
    case OPT_INTERVAL:
        r = parse_u64(val, 3600000, &v);
        if (r == 0 && v == 0)
            r = -ERANGE;
        c->checkpoint_interval_ms = (unsigned)v;
        break;
    case OPT_SYNC:
        r = parse_u64(val, 3600000, &v);
        if (r == 0 && v == 0)
            r = -ERANGE;
        c->sync_interval_ms = (unsigned)v;
        break;
    case OPT_MAX_CLIENTS:
        r = parse_u64(val, 1000000, &v);
        if (r == 0 && v == 0)
            r = -ERANGE;
        c->max_clients = (size_t)v;
        break;
    case OPT_MAX_REQUEST:
        r = parse_u64(val, (uint64_t)1 << 32, &v);
        if (r == 0 && v < 1024)
            r = -ERANGE;
        c->max_request_bytes = (size_t)v;
        break;
    case OPT_MAXMEMORY:
        r = parse_bytes(val, &c->maxmemory);
        break;
    case OPT_FINDER_TIMEOUT:
        r = parse_u64(val, 86400000, &v);
        c->finder_timeout_ms = (unsigned)v;
        break;
    case OPT_SHUTDOWN_TIMEOUT:
        r = parse_u64(val, 86400000, &v);
        c->shutdown_timeout_ms = (unsigned)v;
        break;
    case OPT_RESET:
        r = val ? parse_bool(val, &c->reset) : (c->reset = true, 0);
        break;
    case OPT_FINDER_TLS:
        r = val ? parse_bool(val, &c->finder_tls) : (c->finder_tls = true, 0);
        break;
    case OPT_AWAIT_LAYOUT:
        r = val ? parse_bool(val, &c->await_layout) : (c->await_layout = true, 0);
        break;
    case OPT_CKPT_LOG:
        c->checkpoint_mode_set = true;
        r = val ? parse_bool(val, &c->checkpoint_log) : (c->checkpoint_log = true, 0);
        break;
    case OPT_CKPT_MODE:
        c->checkpoint_mode_set = true;
        r = 0;
        if (!strcmp(val, "log"))
            c->checkpoint_log = true;
        else if (!strcmp(val, "full"))
            c->checkpoint_log = false;
        else
            r = -EINVAL;
        break;
    case OPT_COMPACT_BYTES:
        c->checkpoint_mode_set = true;
        r = parse_bytes(val, &c->compact_bytes);
        break;
    case OPT_VERBOSE:
        r = val ? parse_bool(val, &c->verbose) : (c->verbose = true, 0);
        break;
    default:
        r = -EINVAL;
    }
    if (r < 0)
        return dpr_err_set(err, r, "invalid value '%s' for %s%s", val ? val : "", from,
                           r == -ERANGE ? " (out of range)" : "");
    return 0;
}

/* The TLS settings go together (the files themselves are read by
 * kv_tls_load). */
static int check_tls(const kv_config *c)
{
    const char *what = NULL;

    if (c->port == 0 && !c->tls_port)
        what = "--port 0 turns the plain listener off: give --tls-port too";
    else if (c->tls_port && (!c->tls_cert_file[0] || !c->tls_key_file[0]))
        what = "--tls-port needs --tls-cert-file and --tls-key-file";
    else if (c->tls_port && c->tls_auth_clients != DPR_TLS_VERIFY_NONE && !c->tls_ca_cert_file[0])
        what = "--tls-auth-clients yes or optional needs --tls-ca-cert-file (or say "
               "--tls-auth-clients no)";
    else if (c->tls_port && c->port >= 0 && (unsigned)c->port == c->tls_port)
        what = "--port and --tls-port must differ";
    else if (c->finder_tls &&
             (!c->tls_cert_file[0] || !c->tls_key_file[0] || !c->tls_ca_cert_file[0]))
        what = "--finder-tls needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file";
    if (!what)
        return 0;
    fprintf(stderr, "%s: %s; try '%s --help'.\n", kv_config_program, what, kv_config_program);
    return -EINVAL;
}

enum kv_config_result kv_config_parse(kv_config *c, int argc, char **argv)
{
    struct option longopts[NOPTS + 1];
    size_t nlong = 0;
    const char *state;
    dpr_err err;
    int ch;

    memset(c, 0, sizeof(*c));
    strcpy(c->listen, "127.0.0.1:6379");
    c->port = -1;
    c->tls_auth_clients = DPR_TLS_VERIFY_REQUIRED;
    strcpy(c->domain, DPR_DOMAIN_DEFAULT);
    c->checkpoint_interval_ms = 100;
    c->compact_bytes = (uint64_t)8 << 20;
    c->checkpoint_log = true;
    c->shutdown_timeout_ms = 30000;
    c->max_clients = 10000;
    c->max_request_bytes = 64u << 20;
    state = getenv("STATE_DIRECTORY");
    if (state && *state) {
        /* systemd passes a colon-separated list: the first is ours */
        size_t n = strcspn(state, ":");
        if (n < sizeof(c->dir)) {
            memcpy(c->dir, state, n);
            c->dir[n] = '\0';
        }
    }
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v && apply(c, &opts[i], v, opts[i].env, &err) < 0) {
            fprintf(stderr, "%s: %s\n", kv_config_program, err.msg);
            return KV_CONFIG_EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < NOPTS; i++) {
        if (!opts[i].name)
            continue; /* environment only */
        longopts[nlong].name = opts[i].name;
        longopts[nlong].has_arg = opts[i].has_arg ? required_argument : no_argument;
        longopts[nlong].flag = NULL;
        longopts[nlong].val = opts[i].id;
        nlong++;
    }
    memset(&longopts[nlong], 0, sizeof(longopts[nlong]));
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const opt_def *o = NULL;
        char from[64];
        if (ch == 'h' || ch == OPT_HELP) {
            fputs(kv_config_usage ? kv_config_usage : usage, stdout);
            return KV_CONFIG_EXIT_OK;
        }
        if (ch == OPT_VERSION) {
            printf("%s %s\n", kv_config_program, DPR_VERSION);
            return KV_CONFIG_EXIT_OK;
        }
        for (size_t i = 0; i < NOPTS; i++)
            if (opts[i].id == ch)
                o = &opts[i];
        if (!o) {
            fprintf(stderr, "Try '%s --help'.\n", kv_config_program);
            return KV_CONFIG_EXIT_USAGE;
        }
        snprintf(from, sizeof(from), "--%s", o->name);
        if (apply(c, o, o->has_arg ? optarg : NULL, from, &err) < 0) {
            fprintf(stderr, "%s: %s\n", kv_config_program, err.msg);
            return KV_CONFIG_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; try '%s --help'.\n", kv_config_program,
                argv[optind], kv_config_program);
        return KV_CONFIG_EXIT_USAGE;
    }
    if (!c->finder[0] || !c->worker_set || !c->dir[0]) {
        fprintf(stderr, "%s: %s is required; try '%s --help'.\n", kv_config_program,
                !c->finder[0] ? "--finder (or DPR_KV_FINDER)"
                : !c->worker_set ? "--worker (or DPR_KV_WORKER)"
                                 : "--dir (or DPR_KV_DIR or STATE_DIRECTORY)",
                kv_config_program);
        return KV_CONFIG_EXIT_USAGE;
    }
    if (check_tls(c) < 0)
        return KV_CONFIG_EXIT_USAGE;
    if (!c->sync_interval_ms)
        c->sync_interval_ms = c->checkpoint_interval_ms;
    c->domain_id = dpr_domain_id(c->domain, strlen(c->domain));
    if (!c->instance[0]) {
        /* systemd's StateDirectory=dpr/<instance> */
        const char *slash = strrchr(c->dir, '/');
        snprintf(c->instance, sizeof(c->instance), "%.63s", slash && slash[1] ? slash + 1 : c->dir);
    }
    return KV_CONFIG_RUN;
}
