/*
 * domains.h - the finder's domains: one finder core (finder.h) per DPR
 * domain (dpr/domain.h), kept and saved together. No I/O.
 *
 * The finder's commands name their domain; the server looks the core up
 * here, and the group commit saves and publishes every domain at once (one
 * state, one fsync or one replicated entry per loop turn). A domain comes
 * into being with the first DPR.WORKER.ADD naming it (world-line
 * DPR_FINDER_FIRST_WORLD_LINE, no workers) and stays, also once its last
 * worker is removed: a domain made again would start over at world-line 1,
 * behind sessions that saw its old world-lines (and a removed worker that
 * joins again resumes at its final cut only while its domain remembers
 * it). Only dpr_domains_split drops a domain (`from`, when it has no
 * workers left).
 *
 * A core's pointer (dpr_domains_find, _ensure, _at) stays valid until
 * dpr_domains_split or dpr_domains_free; other domains coming into being
 * do not move it.
 *
 * Durability works as in finder.h, for all domains together: mutations
 * change the working state; dpr_domains_get_state copies it (with a
 * generation that every change of any domain bumps), a store saves the copy,
 * dpr_domains_publish publishes it. The query functions of each core show
 * its published view only.
 *
 * Upgrading: a finder from before domains kept one world-line for every
 * worker; a store that reads such a state gives it as one domain named
 * DPR_DOMAIN_DEFAULT. An owner that knows which workers belong to which
 * domain (the agent: the deployment of each instance) moves them with
 * dpr_domains_split, keeping their world-line, cuts, durable versions and
 * tokens, so nothing is rolled back and nothing committed is lost.
 *
 * All functions return 0 or a negative errno unless said otherwise.
 */
#ifndef DPR_DOMAINS_H
#define DPR_DOMAINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/domain.h"
#include "dpr/finder.h"

typedef struct dpr_domains dpr_domains;

/* One domain's durable state. */
typedef struct dpr_domain_state {
    char name[DPR_DOMAIN_MAX + 1];
    dpr_finder_state state;
} dpr_domain_state;

/* Every domain's durable state: what a store saves and loads. */
typedef struct dpr_domains_state {
    uint64_t generation;       /* bumped by every change of any domain */
    size_t n;
    dpr_domain_state *domains; /* sorted by name, names unique and valid */
} dpr_domains_state;

void dpr_domains_state_free(dpr_domains_state *st);

/* No domains yet. */
int dpr_domains_new(dpr_domains **out);
/* From a stored state (-EINVAL: a bad name, duplicate or unsorted names, or
 * a domain's state that dpr_finder_restore refuses). */
int dpr_domains_restore(const dpr_domains_state *st, dpr_domains **out);
void dpr_domains_free(dpr_domains *ds);

/* The core of domain `name`, or NULL (a lookup: never creates). */
dpr_finder *dpr_domains_find(const dpr_domains *ds, const char *name);
/* The core of domain `name`, created when missing. -EINVAL for an invalid
 * name, -ENOMEM. */
int dpr_domains_ensure(dpr_domains *ds, const char *name, dpr_finder **out);

/* Domains in name order: i < dpr_domains_count. */
size_t dpr_domains_count(const dpr_domains *ds);
const char *dpr_domains_name(const dpr_domains *ds, size_t i);
dpr_finder *dpr_domains_at(const dpr_domains *ds, size_t i);

/* Any domain's working state changed (or a domain was added) since the
 * last publish? */
bool dpr_domains_dirty(const dpr_domains *ds);
/* Copy of every domain's working state, to be saved. */
int dpr_domains_get_state(const dpr_domains *ds, dpr_domains_state *out);
/* The copy `saved` (from dpr_domains_get_state) is durable: publish each
 * domain's part (dpr_finder_publish_state). Older than what is published:
 * ignored. */
int dpr_domains_publish(dpr_domains *ds, const dpr_domains_state *saved);

/*
 * Moves workers[0..n) of domain `from` into domain `to`, which must not
 * exist yet (-EEXIST): `to` starts on `from`'s world-line with their cuts,
 * durable versions and tokens, and the remembered prefixes of ended
 * world-lines restricted to them; `from` forgets them (and is dropped when
 * it has no workers left). -ENOENT when `from` or one of the workers is
 * unknown, -EINVAL for an invalid name, -EBUSY while `from`'s working state
 * is not published yet (save and publish first: the split publishes the
 * new cores at once), -ENOMEM. Changes nothing on failure. Duplicates in
 * workers name one worker. The moved workers' graph is lost, as in a
 * restart (so is `from`'s): versions up to their durable versions commit
 * through each domain's minimum rule, which assumes no session spanned
 * workers that end up in different domains. For the upgrade from a finder
 * without domains (see above).
 */
int dpr_domains_split(dpr_domains *ds, const char *from, const char *to,
                      const uint64_t *workers, size_t n);

#endif
