/* kv_snap.c - see kv_snap.h. */
#include "kv_snap.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "kv_ckpt.h"

int kv_snap_init(kv_snapper *s, const char *dir, uint64_t worker, unsigned retry_ms)
{
    memset(s, 0, sizeof(*s));
    s->dir = dir;
    s->worker = worker;
    s->retry_ms = retry_ms ? retry_ms : 100;
    void *p = mmap(NULL, sizeof(kv_snap_shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    s->shared = p;
    memset(s->shared, 0, sizeof(*s->shared));
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

#define CHILD_LOG_EVERY_MS 60000
#define KV_SNAP_COMPACT_NICE 10 /* added to the server's nice value */

/* A child's first steps: signals as a fresh process has them (the
 * parent's libuv handlers would write into the parent's signal pipe), and
 * death with the parent (if it is gone already, nobody wants the file). */
static void child_setup(pid_t parent)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1, SIGUSR2};
    struct sigaction sa;
    sigset_t all;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(3);
}

/* The child: write until it works, then exit. Never returns. */
static void child_main(kv_snapper *s, const kv_dict *d, const kv_ckpt_meta *meta, unsigned slot,
                       pid_t parent)
{
    kv_ckpt_meta m = *meta;
    unsigned delay = s->retry_ms, max_delay;
    uint64_t last_log = 0, failed = 0;
    dpr_err err;

    child_setup(parent);
    max_delay = s->retry_ms > KV_SNAP_RETRY_MAX_MS ? s->retry_ms : KV_SNAP_RETRY_MAX_MS;
    for (;;) {
        /* after a failure only the oldest checkpoint retries: the others
         * would compete for the same space and could not complete before it */
        while (failed && __atomic_load_n(&s->shared->head, __ATOMIC_SEQ_CST) != m.version)
            sleep_ms(s->retry_ms);
        int r = kv_ckpt_write(s->dir, &m, d, &err);
        if (r == 0)
            _exit(0);
        struct stat st;
        if (r == -ENOENT && stat(s->dir, &st) < 0)
            dpr_err_set(&err, r, "the state directory %s is gone (deleted, or not mounted?)",
                        s->dir);
        failed++;
        uint64_t now = dpr_mono_ms();
        if (failed == 1 || now - last_log >= CHILD_LOG_EVERY_MS) {
            if (failed == 1)
                log_warning("checkpoint %" PRIu64 " failed: %s; retrying", m.version,
                            dpr_err_str(&err, r));
            else
                log_warning("checkpoint %" PRIu64 " still failing after %" PRIu64
                            " attempts: %s; retrying",
                            m.version, failed, dpr_err_str(&err, r));
            last_log = now;
        }
        dpr_err_prefix(&err, "checkpoint %" PRIu64, m.version);
        s->shared->last_error = err;
        __atomic_add_fetch(&s->shared->slot_failures[slot], 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&s->shared->failures, 1, __ATOMIC_SEQ_CST);
        sleep_ms(delay);
        delay = delay * 2 > max_delay ? max_delay : delay * 2;
    }
}

static void set_head(kv_snapper *s)
{
    __atomic_store_n(&s->shared->head, s->njobs ? s->jobs[0].version : 0, __ATOMIC_SEQ_CST);
}

int kv_snap_start(kv_snapper *s, const kv_dict *d, uint64_t version, uint64_t world_line,
                  uint64_t committed)
{
    kv_ckpt_meta m = {s->worker, world_line, version, 0, dpr_wall_ms(), committed, false, 0};
    pid_t parent = getpid(), pid;
    unsigned slot;
    uint64_t t0;

    if (s->njobs == KV_SNAP_MAX_JOBS)
        return -EBUSY;
    /* jobs are in the order they were sealed, and versions only grow
     * (a rollback kills them all first) */
    assert(s->njobs == 0 || s->jobs[s->njobs - 1].version < version);
    /* a free slot exists: fewer than KV_SNAP_MAX_JOBS jobs use one each */
    for (slot = 0; slot < KV_SNAP_MAX_JOBS; slot++) {
        bool used = false;
        for (size_t i = 0; i < s->njobs; i++)
            used |= s->jobs[i].slot == slot;
        if (!used)
            break;
    }
    assert(slot < KV_SNAP_MAX_JOBS);
    __atomic_store_n(&s->shared->slot_failures[slot], 0, __ATOMIC_SEQ_CST);
    if (s->njobs == 0)
        __atomic_store_n(&s->shared->head, version, __ATOMIC_SEQ_CST);
    t0 = dpr_mono_ns();
    pid = fork();
    if (pid < 0) {
        int r = -errno;
        set_head(s);
        return r;
    }
    if (pid == 0)
        child_main(s, d, &m, slot, parent);
    kv_snap_job *j = &s->jobs[s->njobs++];
    memset(j, 0, sizeof(*j));
    j->version = version;
    j->world_line = world_line;
    j->committed = committed;
    j->slot = slot;
    j->pid = pid;
    j->state = KV_SNAP_RUNNING;
    j->start_ns = t0;
    j->start_ms = m.created_ms;
    j->fork_usec = (dpr_mono_ns() - t0) / 1000u;
    return 0;
}

int kv_snap_reap(kv_snapper *s)
{
    int finished = 0;
    for (size_t i = 0; i < s->njobs; i++) {
        kv_snap_job *j = &s->jobs[i];
        int status;
        if (j->state != KV_SNAP_RUNNING)
            continue;
        pid_t r = waitpid(j->pid, &status, WNOHANG);
        if (r == 0)
            continue;
        if (r < 0 && errno == EINTR) {
            i--;
            continue;
        }
        /* r < 0 (ECHILD) cannot happen for our own child; treat as failed */
        j->status = r < 0 ? -1 : status;
        j->state = (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ? KV_SNAP_DONE
                                                                            : KV_SNAP_FAILED;
        j->end_ns = dpr_mono_ns();
        finished++;
    }
    return finished;
}

bool kv_snap_pop(kv_snapper *s, kv_snap_job *out)
{
    if (s->njobs == 0 || s->jobs[0].state == KV_SNAP_RUNNING)
        return false;
    *out = s->jobs[0];
    memmove(&s->jobs[0], &s->jobs[1], (s->njobs - 1) * sizeof(s->jobs[0]));
    s->njobs--;
    set_head(s);
    return true;
}

static void kill_job(kv_snap_job *j)
{
    if (j->state != KV_SNAP_RUNNING)
        return;
    kill(j->pid, SIGKILL);
    while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

void kv_snap_abort_newest(kv_snapper *s)
{
    char tmp[PATH_MAX];
    if (s->njobs == 0)
        return;
    kv_snap_job *j = &s->jobs[--s->njobs];
    kill_job(j);
    set_head(s);
    if (kv_ckpt_path(tmp, sizeof(tmp), s->dir, j->version, 1) == 0)
        unlink(tmp);
}

void kv_snap_kill_all(kv_snapper *s)
{
    for (size_t i = 0; i < s->njobs; i++)
        kill_job(&s->jobs[i]);
    s->njobs = 0;
    if (s->shared)
        set_head(s);
    if (s->dir)
        (void)kv_ckpt_remove_tmp(s->dir);
}

uint64_t kv_snap_failures(const kv_snapper *s, dpr_err *last)
{
    uint64_t n = __atomic_load_n(&s->shared->failures, __ATOMIC_SEQ_CST);

    /* a child may be writing it right now: the copy is terminated anyway */
    *last = s->shared->last_error;
    last->msg[sizeof(last->msg) - 1] = '\0';
    return n;
}

bool kv_snap_failing(const kv_snapper *s, uint64_t *version)
{
    for (size_t i = 0; i < s->njobs; i++) {
        const kv_snap_job *j = &s->jobs[i];
        if (j->state == KV_SNAP_RUNNING &&
            __atomic_load_n(&s->shared->slot_failures[j->slot], __ATOMIC_SEQ_CST) > 0) {
            if (version)
                *version = j->version;
            return true;
        }
    }
    return false;
}

int kv_snap_compact(kv_snapper *s, const kv_dict *d, uint64_t version, uint64_t world_line,
                    uint64_t committed, pid_t *pid)
{
    kv_ckpt_meta m = {s->worker, world_line, version, 0, dpr_wall_ms(), committed, false, 0};
    pid_t parent = getpid(), p;
    dpr_err err;

    p = fork();
    if (p < 0)
        return -errno;
    if (p == 0) {
        child_setup(parent);
        /* background work that no commit waits for: it gets the CPU the
         * server, its change-log writer and the clients leave over */
        errno = 0;
        if (nice(KV_SNAP_COMPACT_NICE) == -1 && errno)
            log_debug("compaction of version %" PRIu64 ": cannot lower its priority: %s",
                      version, strerror(errno));
        int r = kv_ckpt_write_compaction(s->dir, &m, d, &err);
        if (r < 0)
            log_warning("compaction of version %" PRIu64 " failed: %s", version,
                        dpr_err_str(&err, r));
        _exit(r < 0 ? 1 : 0);
    }
    *pid = p;
    return 0;
}
