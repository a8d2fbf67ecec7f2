/*
 * rp_save.h - dpr-redis' checkpoints at run time (docs/dpr-redis.md,
 * "Checkpoints"): a version is sealed and its image saved by redis-server's
 * BGSAVE into a file of its own (CONFIG SET dbfilename, then BGSAVE, at
 * that point of the command stream), polled with INFO persistence until it
 * is on disk, renamed to ckpt-<v>.w<wl>.rdb (rp_ckpt.c names them) and
 * reported to the finder. A failed save is not reported: writes are
 * refused (-MISCONF) and the next interval tries again. Files the cut no
 * longer needs are deleted. Part of the proxy (rp_proxy_int.h).
 */
#ifndef RP_SAVE_H
#define RP_SAVE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "rp_proxy_int.h"

/* Seals the open version (the next one gets at least `next`) and sends its
 * save. Only when no save runs (!rp_save_blocked). */
void rp_save_begin(rp_proxy *p, uint64_t next);
/* Whether a seal must wait: a save runs, or the last one failed and its
 * retry is not due (one attempt per interval, whatever asks for it). */
bool rp_save_blocked(const rp_proxy *p);
/* Adds version v to the files on disk (at start-up): 0 or -ENOMEM. */
int rp_save_add(rp_proxy *p, uint64_t v);
/* Deletes the files of the versions outside [lo_keep, hi_keep]. */
void rp_save_drop(rp_proxy *p, uint64_t lo_keep, uint64_t hi_keep);
/* The cut moved to `cut`: files older than the newest one <= cut go. */
void rp_save_gc(rp_proxy *p, uint64_t cut);
/* The timers (t->data is the proxy): every checkpoint interval, a seal
 * when something ran; every few ms while a save runs, the poll. */
void rp_save_on_ckpt_timer(uv_timer_t *t);
void rp_save_on_poll_timer(uv_timer_t *t);

#endif
