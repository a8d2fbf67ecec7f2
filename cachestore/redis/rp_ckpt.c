/* rp_ckpt.c - dpr-redis' checkpoint files in the state directory (rp_proxy.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_rdb.h"
#include "rp_proxy.h"

int rp_ckpt_list(uint64_t **versions, uint64_t **world_lines, size_t *n)
{
    DIR *d = opendir(".");
    struct dirent *e;
    uint64_t *v = NULL, *w = NULL;
    size_t count = 0, cap = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        uint64_t ver, wl;
        size_t len = strlen(e->d_name);
        /* ours, and those of a BGSAVE child that outlived its Redis */
        if ((strncmp(e->d_name, "ckpt-", 5) == 0 && len > 4 &&
             strcmp(e->d_name + len - 4, ".tmp") == 0) ||
            (strncmp(e->d_name, "temp-", 5) == 0 && len > 4 &&
             strcmp(e->d_name + len - 4, ".rdb") == 0)) {
            unlink(e->d_name);
            continue;
        }
        if (!kv_rdb_parse_name(e->d_name, &ver, &wl))
            continue;
        if (count == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, nc * sizeof(*nv)), *nw;
            if (nv)
                v = nv;
            nw = nv ? realloc(w, nc * sizeof(*nw)) : NULL;
            if (!nv || !nw) {
                closedir(d);
                free(v);
                free(w);
                return -ENOMEM;
            }
            w = nw;
            cap = nc;
        }
        /* insertion sort: a few files */
        size_t i = count++;
        while (i > 0 && v[i - 1] > ver) {
            v[i] = v[i - 1];
            w[i] = w[i - 1];
            i--;
        }
        v[i] = ver;
        w[i] = wl;
    }
    closedir(d);
    *versions = v;
    *world_lines = w;
    *n = count;
    return 0;
}

void rp_ckpt_name(uint64_t version, char *out, size_t cap)
{
    DIR *d = opendir(".");
    struct dirent *e;

    out[0] = 0;
    if (!d)
        return;
    while ((e = readdir(d))) {
        uint64_t v, wl;
        if (kv_rdb_parse_name(e->d_name, &v, &wl) && v == version) {
            snprintf(out, cap, "%s", e->d_name);
            break;
        }
    }
    closedir(d);
}
