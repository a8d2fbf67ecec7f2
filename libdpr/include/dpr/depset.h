/*
 * depset.h - a sparse map worker id -> version.
 *
 * Used for a session's dependencies, for the dependency set of a worker's
 * version and inside the finder. Worker ids are arbitrary 64-bit values;
 * version 0 means "no dependency", so it is never stored. Open addressing
 * with linear probing; the table doubles when it is 3/4 full, so sets of
 * 65,536 and more workers are fine.
 *
 * Functions that can allocate return 0 or -ENOMEM and leave the set
 * unchanged on failure.
 */
#ifndef DPR_DEPSET_H
#define DPR_DEPSET_H

#include "dpr/export.h"

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct dpr_dep {
    uint64_t worker;
    uint64_t version; /* 0 marks an empty slot */
} dpr_dep;

typedef struct dpr_depset {
    dpr_dep *slots;
    size_t cap;   /* 0 or a power of two */
    size_t count;
} dpr_depset;

#define DPR_DEPSET_INIT { NULL, 0, 0 }

DPR_EXPORT void dpr_depset_init(dpr_depset *s);
DPR_EXPORT void dpr_depset_free(dpr_depset *s);
DPR_EXPORT void dpr_depset_clear(dpr_depset *s);            /* keeps the memory */
DPR_EXPORT size_t dpr_depset_count(const dpr_depset *s);

/* Version of worker, 0 if absent. */
DPR_EXPORT uint64_t dpr_depset_get(const dpr_depset *s, uint64_t worker);
/* Sets worker's entry to version (version 0 removes it). */
DPR_EXPORT int dpr_depset_set(dpr_depset *s, uint64_t worker, uint64_t version);
/* Sets worker's entry to max(current, version). */
DPR_EXPORT int dpr_depset_put_max(dpr_depset *s, uint64_t worker, uint64_t version);
/* Removes worker; returns true if it was there. */
DPR_EXPORT bool dpr_depset_remove(dpr_depset *s, uint64_t worker);
/* Removes every entry whose version is <= cut[worker] (absent: 0); returns
 * how many were removed. Never allocates. */
DPR_EXPORT size_t dpr_depset_prune(dpr_depset *s, const dpr_depset *cut);
/* Deep copy into dst (dst must be initialised; its old content is dropped). */
DPR_EXPORT int dpr_depset_copy(dpr_depset *dst, const dpr_depset *src);

/*
 * Iteration: size_t it = 0; dpr_dep d;
 *            while (dpr_depset_next(s, &it, &d)) { ... }
 * Order is unspecified. The set must not be modified while iterating.
 */
DPR_EXPORT bool dpr_depset_next(const dpr_depset *s, size_t *it, dpr_dep *out);

#endif
