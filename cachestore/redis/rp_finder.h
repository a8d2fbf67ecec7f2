/*
 * rp_finder.h - dpr-redis' side of the finder link (kv_finder.c carries
 * it): what DPR.SYNC brings (the cut: old checkpoint files go; a newer
 * world-line: a rollback, rp_rollback), refused reports and syncs, being
 * fenced (exit 78, not restarted), and a planned stop's steps (seal what
 * ran, wait until every checkpoint is durable and reported, leave with
 * DPR.WORKER.LEAVE, end the loop). Part of the proxy (rp_proxy_int.h).
 */
#ifndef RP_FINDER_H
#define RP_FINDER_H

#include <uv.h>

#include "kv_finder.h"
#include "rp_proxy_int.h"

/* The events of the proxy's finder link (ud: the proxy). */
kv_finder_cb rp_finder_callbacks(void);
/* The timers (t->data is the proxy): DPR.SYNC every sync interval; a
 * planned stop's next step every few ms once it started. */
void rp_finder_on_sync_timer(uv_timer_t *t);
void rp_finder_on_stop_timer(uv_timer_t *t);

#endif
