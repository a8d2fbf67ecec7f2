/*
 * fuzz_common_tls.c - the TLS engine (common/tls.h) fed arbitrary bytes as
 * if from a socket, on the accepting side (the first byte: 1 = connecting
 * side, then how many bytes per feed). Whatever comes, the engine answers
 * with a count or a negative errno with a message, never a crash or a
 * leak; after a failure it stays failed. The certificate is made once with
 * the openssl CLI in a temporary directory (removed at exit).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz_tls.XXXXXX";
static dpr_tls_ctx *server, *client;

static void cleanup(void)
{
    char cmd[64];
    dpr_tls_ctx_free(server);
    dpr_tls_ctx_free(client);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static void setup(void)
{
    char cmd[512], crt[64], key[64];
    dpr_err err = DPR_ERR_INIT;

    if (!mkdtemp(dir))
        abort();
    snprintf(crt, sizeof(crt), "%s/n.crt", dir);
    snprintf(key, sizeof(key), "%s/n.key", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj /CN=n -addext subjectAltName=URI:dpr://c/node/n -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, crt);
    if (system(cmd) != 0)
        abort();
    dpr_tls_config cfg = {crt, key, crt, NULL, DPR_TLS_VERIFY_OPTIONAL, "c"};
    if (dpr_tls_ctx_new(&cfg, true, &server, &err) < 0 ||
        dpr_tls_ctx_new(&cfg, false, &client, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dpr_tls_conn *t = NULL;
    dpr_buf plain = DPR_BUF_INIT, out = DPR_BUF_INIT;
    size_t chunk;
    int failed = 0;

    if (!server)
        setup();
    if (size < 2)
        return 0;
    if (dpr_tls_conn_new(data[0] & 1 ? client : server, NULL, &t, NULL) < 0)
        abort(); /* only out of memory could fail it */
    chunk = (size_t)data[1] * 16 + 1;
    data += 2;
    size -= 2;
    (void)dpr_tls_conn_take(t, &out); /* a client's hello */
    while (size > 0) {
        size_t n = size < chunk ? size : chunk;
        if (dpr_tls_conn_feed(t, data, n) < 0)
            abort();
        ssize_t r = dpr_tls_conn_read(t, &plain);
        if (r < 0) {
            if (r != -EPROTO && r != -EACCES && r != -ENOMEM)
                abort();
            if (!dpr_tls_conn_errstr(t)[0])
                abort(); /* every failure says why */
            failed = (int)r;
        } else if (failed) {
            abort(); /* a failure sticks */
        }
        if (dpr_tls_conn_write(t, "x", 1) < 0 && !failed)
            abort();
        out.len = 0;
        (void)dpr_tls_conn_take(t, &out);
        data += n;
        size -= n;
    }
    dpr_tls_conn_close_notify(t);
    (void)dpr_tls_conn_take(t, &out);
    dpr_tls_conn_free(t);
    dpr_buf_free(&plain);
    dpr_buf_free(&out);
    return 0;
}
