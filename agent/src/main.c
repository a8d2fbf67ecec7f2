/* main.c - dpr-agent: arguments, signals, sd_notify, watchdog. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "agent.h"
#include "agenttls.h"
#include "common/err.h"
#include "common/log.h"
#include "common/version.h"
#include "config.h"

static void usage(FILE *out)
{
    fprintf(out,
"Usage: dpr-agent [--config FILE]\n"
"       dpr-agent --check-config [FILE]\n"
"\n"
"The DPR Cluster node daemon: serves the control API on a Unix socket, runs\n"
"cache-store instances as systemd units (dpr-cachestore@<instance>.service)\n"
"through D-Bus, and hosts the DPR finder. See docs/operations.md.\n"
"\n"
"Options:\n"
"  -c, --config FILE        configuration file (default %s)\n"
"      --check-config [FILE] check FILE (default: --config's) and print every\n"
"                           problem with its line; exit 0 when it is valid\n"
"  -v, --verbose            debug logging (also log.verbose in the file)\n"
"  -h, --help               this text\n"
"      --version            print the version and exit\n"
"\n"
"Runs until SIGTERM or SIGINT; cache-store units keep running when it stops.\n"
"Under systemd (Type=notify) it sends READY=1 once the control socket is\n"
"bound and the state is loaded, STATUS= lines and watchdog pings. Logs go to\n"
"the journal with DPR_* fields, or to stderr.\n"
"Exit status: 0 clean stop, 1 failure (bad config, damaged state, ...), 2 bad\n"
"usage.\n", AGENT_DEFAULT_CONFIG);
}

typedef struct runner {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t watchdog;
    bool watchdog_on;
    agent *a;
    int status;
    bool stopping;
} runner;

static int check_config(const char *path)
{
    agent_problems p;
    agent_config c;
    int rc;

    agent_problems_init(&p);
    rc = agent_config_load(path, &c, &p);
    for (size_t i = 0; i < p.n; i++)
        fprintf(stderr, "%s: %s\n", p.v[i].where, p.v[i].message);
    if (rc == 0 && c.tls_enabled) {
        agent_tls *tls;
        dpr_err err = DPR_ERR_INIT;
        int trc = agent_tls_load(&c, &tls, &err);

        agent_tls_free(tls);
        if (trc < 0) {
            fprintf(stderr, "%s: tls: %s\n", path, dpr_err_str(&err, trc));
            agent_config_free(&c);
            rc = trc;
        }
    }
    if (rc == 0) {
        printf("%s: ok (cluster '%s', node '%s', control socket %s, finder %s", path,
               c.cluster, c.node_name, c.control_socket, c.finder_listen);
        if (c.raft_address)
            printf(", raft %s with %zu peer%s%s", c.raft_address, c.nraft_peers,
                   c.nraft_peers == 1 ? "" : "s", c.raft_join ? ", joining" : "");
        if (c.tls_enabled)
            printf(", TLS %s, finder TLS port %s", c.tls_cert, c.finder_tls_listen);
        printf(")\n");
        agent_config_free(&c);
    } else {
        if (p.n)
            fprintf(stderr, "%s: %zu problem%s\n", path, p.n, p.n == 1 ? "" : "s");
    }
    agent_problems_free(&p);
    return rc == 0 ? 0 : 1;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void stop(runner *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    sd_notify(0, "STOPPING=1\nSTATUS=stopping (cache-store units keep running)");
    agent_stop(r->a);
    uv_close((uv_handle_t *)&r->sigterm, close_cb);
    uv_close((uv_handle_t *)&r->sigint, close_cb);
    uv_close((uv_handle_t *)&r->sighup, close_cb);
    uv_close((uv_handle_t *)&r->watchdog, close_cb);
}

static void on_signal(uv_signal_t *h, int signum)
{
    runner *r = h->data;

    if (signum == SIGHUP) {
        if (r->a && !r->stopping)
            agent_reload_tls(r->a);
        return;
    }
    log_info("%s received: stopping (cache-store units keep running)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT");
    stop(r);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

static void on_fatal(void *arg, const char *why)
{
    runner *r = arg;
    char msg[300];

    snprintf(msg, sizeof(msg), "STATUS=failed: %s", why);
    sd_notify(0, msg);
    r->status = 1;
    stop(r);
}

static void on_status(void *arg, const char *text)
{
    char msg[600];

    (void)arg;
    snprintf(msg, sizeof(msg), "STATUS=%s", text);
    sd_notify(0, msg);
}

/* Every journal entry of the agent names its cluster and node. */
static void log_fields(const agent_config *cfg)
{
    char field[320];

    snprintf(field, sizeof(field), "DPR_CLUSTER=%s", cfg->cluster);
    dpr_log_add_field(field);
    snprintf(field, sizeof(field), "DPR_NODE=%s", cfg->node_name);
    dpr_log_add_field(field);
}

static int run(const char *path, bool verbose)
{
    agent_hooks hooks;
    agent_problems p;
    agent_config cfg;
    runner r;
    uint64_t wd_usec = 0;
    dpr_err err = DPR_ERR_INIT;
    int rc;

    memset(&r, 0, sizeof(r));
    dpr_log_open("dpr-agent", verbose);
    agent_problems_init(&p);
    rc = agent_config_load(path, &cfg, &p);
    if (rc < 0) {
        for (size_t i = 0; i < p.n; i++)
            log_error("%s: %s", p.v[i].where, p.v[i].message);
        log_error("cannot start: %s is not valid (dpr-agent --check-config %s)", path, path);
        agent_problems_free(&p);
        sd_notifyf(0, "STATUS=failed: invalid configuration %s", path);
        return 1;
    }
    agent_problems_free(&p);
    dpr_log_open("dpr-agent", verbose || cfg.verbose);
    log_fields(&cfg);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&r.loop);
    uv_signal_init(&r.loop, &r.sigterm);
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sighup);
    uv_timer_init(&r.loop, &r.watchdog);
    r.sigterm.data = r.sigint.data = r.sighup.data = r.watchdog.data = &r;
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sighup, on_signal, SIGHUP);

    hooks.fatal = on_fatal;
    hooks.status = on_status;
    hooks.arg = &r;
    rc = agent_start(&r.loop, &cfg, &hooks, &r.a, &err);
    if (rc < 0) {
        log_error("cannot start: %s", dpr_err_str(&err, rc));
        sd_notifyf(0, "STATUS=failed: %s", dpr_err_str(&err, rc));
        r.status = 1;
        stop(&r);
    } else {
        if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0)
            uv_timer_start(&r.watchdog, on_watchdog, wd_usec / 2000 ? wd_usec / 2000 : 1,
                           wd_usec / 2000 ? wd_usec / 2000 : 1);
        sd_notify(0, "READY=1");
        log_info("ready");
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    /* everything is closed: the close callbacks have run */
    agent_free(r.a);
    if (uv_loop_close(&r.loop) != 0)
        log_warning("event loop still had handles at exit");
    if (r.status == 0)
        log_info("stopped");
    agent_config_free(&cfg);
    return r.status;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", optional_argument, NULL, 'C' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = AGENT_DEFAULT_CONFIG, *check = NULL;
    bool checking = false, verbose = false;
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            checking = true;
            check = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("dpr-agent %s\n", DPR_VERSION);
            return 0;
        case ':':
            fprintf(stderr, "dpr-agent: option '%s' needs a value (see --help)\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "dpr-agent: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    /* --check-config FILE (with a space) */
    if (checking && !check && optind < argc)
        check = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "dpr-agent: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (checking)
        return check_config(check ? check : path);
    return run(path, verbose);
}
