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

/* The child: write until it works, then exit. Never returns. */
static void child_main(kv_snapper *s, const kv_dict *d, uint64_t version,
                       uint64_t world_line, pid_t parent)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1, SIGUSR2};
    kv_ckpt_meta m = {s->worker, world_line, version, 0, dpr_wall_ms()};
    struct sigaction sa;
    sigset_t all;
    dpr_err err;

    /* the parent's libuv signal handlers would write into the parent's
     * signal pipe: back to defaults first */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(3); /* parent already gone: nobody wants this checkpoint */
    for (;;) {
        int r = kv_ckpt_write(s->dir, &m, d, &err);
        if (r == 0)
            _exit(0);
        log_error("checkpoint %" PRIu64 " failed: %s; retrying in %u ms", version,
                  dpr_err_str(&err, r), s->retry_ms);
        dpr_err_prefix(&err, "checkpoint %" PRIu64, version);
        s->shared->last_error = err;
        __atomic_add_fetch(&s->shared->failures, 1, __ATOMIC_SEQ_CST);
        struct timespec ts = {s->retry_ms / 1000, (long)(s->retry_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
}

int kv_snap_start(kv_snapper *s, const kv_dict *d, uint64_t version, uint64_t world_line)
{
    pid_t parent = getpid(), pid;
    uint64_t t0;

    if (s->njobs == KV_SNAP_MAX_JOBS)
        return -EBUSY;
    /* jobs are in the order they were sealed, and versions only grow
     * (a rollback kills them all first) */
    assert(s->njobs == 0 || s->jobs[s->njobs - 1].version < version);
    t0 = dpr_mono_ns();
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        child_main(s, d, version, world_line, parent);
    kv_snap_job *j = &s->jobs[s->njobs++];
    memset(j, 0, sizeof(*j));
    j->version = version;
    j->world_line = world_line;
    j->pid = pid;
    j->state = KV_SNAP_RUNNING;
    j->start_ns = t0;
    j->start_ms = dpr_wall_ms();
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
    if (kv_ckpt_path(tmp, sizeof(tmp), s->dir, j->version, 1) == 0)
        unlink(tmp);
}

void kv_snap_kill_all(kv_snapper *s)
{
    for (size_t i = 0; i < s->njobs; i++)
        kill_job(&s->jobs[i]);
    s->njobs = 0;
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
