/*
 * fuzz_store_image.c - the finder state's image (dpr/store.h), which comes
 * from a file and, in a cluster, from other agents over Raft: arbitrary
 * bytes through the decoder; what it takes must restore into domains and
 * encode back to an image that decodes to the same bytes again; a worker
 * stored away (format 4) comes back without a new world-line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "dpr/domains.h"
#include "dpr/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dpr_domains_state st, back;
    dpr_domains *ds = NULL;
    dpr_buf a, b;

    if (dpr_store_image_decode(data, size, "fuzz", &st, NULL) != 0)
        return 0;
    dpr_buf_init(&a);
    dpr_buf_init(&b);
    /* a decoded state is consistent: it encodes, and restores */
    if (dpr_store_image_encode(&st, &a, NULL) != 0)
        abort();
    if (dpr_store_image_decode(a.data, a.len, "fuzz", &back, NULL) != 0)
        abort();
    if (dpr_store_image_encode(&back, &b, NULL) != 0 || a.len != b.len ||
        memcmp(a.data, b.data, a.len) != 0)
        abort();
    if (dpr_domains_restore(&st, &ds) == 0) {
        /* a worker stored away comes back without a new world-line, at
         * its stored checkpoint */
        for (size_t i = 0; i < st.n; i++) {
            const dpr_finder_state *d = &st.domains[i].state;
            dpr_finder *f = dpr_domains_find(ds, st.domains[i].name);
            for (size_t j = 0; f && j < d->nworkers; j++) {
                const dpr_finder_worker_state *w = &d->workers[j];
                uint64_t wl = 0, restore = 0;
                if (!w->away)
                    continue;
                if (dpr_finder_add_worker_token(f, w->worker, w->token, strlen(w->token), &wl,
                                                &restore) != 0 ||
                    wl != d->world_line || restore != w->durable)
                    abort();
            }
        }
        dpr_domains_free(ds);
    }
    dpr_domains_state_free(&st);
    dpr_domains_state_free(&back);
    dpr_buf_free(&a);
    dpr_buf_free(&b);
    return 0;
}
