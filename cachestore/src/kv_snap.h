/*
 * kv_snap.h - fork-based copy-on-write snapshots.
 *
 * kv_snap_start() forks: the child sees the keyspace frozen at the fork
 * instant (the version boundary) and writes it as a checkpoint file
 * (kv_ckpt_write), then exits 0. If writing fails (disk full, I/O error,
 * the state directory gone) the child counts it in shared memory, waits and
 * tries again: the frozen image exists only in the child, so the child is
 * what must survive until the checkpoint is on disk. The wait doubles from
 * the retry delay up to KV_SNAP_RETRY_MAX_MS, and a child that has failed
 * retries only while its job is the oldest (the head): with a full disk one
 * checkpoint at a time is attempted, never several at once. The child logs
 * its first failure and then once a minute; the parent logs the state
 * change (kv_snap_failing). The parent kills children only when their
 * versions are no longer wanted (rollback) or at a forced exit. Children
 * die with the parent (PR_SET_PDEATHSIG).
 *
 * Jobs are kept in the order they were started (= sealed); the parent
 * reaps exited children (kv_snap_reap, from its SIGCHLD handler) and takes
 * finished jobs off the front in that order (kv_snap_pop).
 */
#ifndef KV_SNAP_H
#define KV_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dpr/err.h"
#include "kv_dict.h"

#define KV_SNAP_MAX_JOBS 4
#define KV_SNAP_RETRY_MAX_MS 2000

enum kv_snap_state { KV_SNAP_RUNNING, KV_SNAP_DONE, KV_SNAP_FAILED };

typedef struct kv_snap_job {
    uint64_t version;
    uint64_t world_line;
    uint64_t committed;  /* recorded in the file's header (kv_ckpt.h) */
    unsigned slot;       /* its counters in kv_snap_shared */
    pid_t pid;
    enum kv_snap_state state;
    int status;          /* waitpid status when finished */
    uint64_t start_ms;   /* wall clock, Unix ms */
    uint64_t start_ns;   /* monotonic */
    uint64_t end_ns;
    uint64_t fork_usec;  /* how long fork() blocked the parent */
} kv_snap_job;

/* Written by children, read by the parent (shared anonymous mapping). */
typedef struct kv_snap_shared {
    uint64_t failures;     /* failed write attempts, all children */
    uint64_t head;         /* written by the parent: the oldest job's version */
    uint64_t slot_failures[KV_SNAP_MAX_JOBS]; /* per running job (kv_snap_job.slot) */
    dpr_err last_error;    /* "checkpoint <v>: <why>" */
} kv_snap_shared;

typedef struct kv_snapper {
    const char *dir;
    uint64_t worker;
    unsigned retry_ms;
    kv_snap_job jobs[KV_SNAP_MAX_JOBS];
    size_t njobs;
    kv_snap_shared *shared;
} kv_snapper;

/* The shared page lives as long as the process (children may still write
 * into it at exit). */
int kv_snap_init(kv_snapper *s, const char *dir, uint64_t worker, unsigned retry_ms);

/* Number of jobs started and not yet popped. */
static inline size_t kv_snap_jobs(const kv_snapper *s) { return s->njobs; }

/* Forks a child writing `d` as checkpoint `version` (committed: see
 * kv_ckpt_meta). -EBUSY when KV_SNAP_MAX_JOBS are pending; fork's errno
 * otherwise. */
int kv_snap_start(kv_snapper *s, const kv_dict *d, uint64_t version, uint64_t world_line,
                  uint64_t committed);
/* Forks a compaction child (kv_ckpt.h, kv_ckpt_write_compaction): it
 * writes `d` as a full image of `version` beside its change log, once (no
 * retry: a compaction that fails is only tried again later), and exits 0
 * when the file is on disk. Not a job: the caller waits for *pid itself. */
int kv_snap_compact(kv_snapper *s, const kv_dict *d, uint64_t version, uint64_t world_line,
                    uint64_t committed, pid_t *pid);
/* Kills and forgets the newest job (its seal could not be recorded). */
void kv_snap_abort_newest(kv_snapper *s);
/* Collects exited children (non-blocking). Returns how many finished. */
int kv_snap_reap(kv_snapper *s);
/* Takes the oldest job off if it has finished: true and *out filled. */
bool kv_snap_pop(kv_snapper *s, kv_snap_job *out);
/* SIGKILLs and reaps every child, forgets all jobs, removes temp files. */
void kv_snap_kill_all(kv_snapper *s);
/* Failures counted by children so far; *last gets a copy of the last one
 * (code 0 and an empty message when there was none). */
uint64_t kv_snap_failures(const kv_snapper *s, dpr_err *last);
/* True while a pending job has failed at least once (its child retries):
 * nothing new should be started then. *version (may be NULL) gets the
 * oldest such job's version. */
bool kv_snap_failing(const kv_snapper *s, uint64_t *version);

#endif
