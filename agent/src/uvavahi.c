/* uvavahi.c - AvahiPoll on libuv (see uvavahi.h). */
#include "uvavahi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>

/* The handle polling one descriptor for the watches on it. */
typedef struct fdpoll {
    uv_poll_t h;
    int fd;
    int events;                /* UV_READABLE | UV_WRITABLE now polled */
    struct AvahiWatch *watches;
    bool dispatching;          /* watches are being called: free them later */
    struct agent_uvavahi *owner;
    struct fdpoll *next;
} fdpoll;

struct AvahiWatch {
    fdpoll *fp;
    AvahiWatchEvent want, got;
    AvahiWatchCallback cb;
    void *userdata;
    bool dead;                 /* freed while its descriptor was dispatching */
    struct AvahiWatch *next;
};

struct AvahiTimeout {
    uv_timer_t t;
    AvahiTimeoutCallback cb;
    void *userdata;
};

struct agent_uvavahi {
    AvahiPoll api;             /* first: the callbacks get it back */
    uv_loop_t *loop;
    fdpoll *polls;
};

static void on_poll(uv_poll_t *h, int status, int events);

static int uv_events(const fdpoll *fp)
{
    int ev = 0;

    for (const struct AvahiWatch *w = fp->watches; w; w = w->next) {
        if (w->dead)
            continue;
        if (w->want & AVAHI_WATCH_IN)
            ev |= UV_READABLE;
        if (w->want & AVAHI_WATCH_OUT)
            ev |= UV_WRITABLE;
    }
    return ev;
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Drops fp from p's list and closes its handle (freed once closed). */
static void close_poll(agent_uvavahi *p, fdpoll *fp)
{
    for (fdpoll **pp = &p->polls; *pp; pp = &(*pp)->next)
        if (*pp == fp) {
            *pp = fp->next;
            break;
        }
    uv_close((uv_handle_t *)&fp->h, on_poll_closed);
}

/* Polls for what fp's watches want now; closes fp when none is left. */
static void repoll(agent_uvavahi *p, fdpoll *fp)
{
    int ev;

    if (!fp->watches) {
        close_poll(p, fp);
        return;
    }
    ev = uv_events(fp);
    if (ev == fp->events)
        return;
    fp->events = ev;
    if (ev)
        uv_poll_start(&fp->h, ev, on_poll);
    else
        uv_poll_stop(&fp->h);
}

static void sweep(fdpoll *fp)
{
    struct AvahiWatch **pw = &fp->watches;

    while (*pw) {
        struct AvahiWatch *w = *pw;
        if (w->dead) {
            *pw = w->next;
            free(w);
        } else {
            pw = &w->next;
        }
    }
}

static agent_uvavahi *owner(const AvahiPoll *api)
{
    return (agent_uvavahi *)api->userdata;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    fdpoll *fp = h->data;
    AvahiWatchEvent ev = 0;

    if (status < 0)
        ev = AVAHI_WATCH_ERR | AVAHI_WATCH_HUP;
    if (events & UV_READABLE)
        ev |= AVAHI_WATCH_IN;
    if (events & UV_WRITABLE)
        ev |= AVAHI_WATCH_OUT;
    if (events & UV_DISCONNECT)
        ev |= AVAHI_WATCH_HUP;
    fp->dispatching = true;
    for (struct AvahiWatch *w = fp->watches; w; w = w->next) {
        AvahiWatchEvent mine = ev & (w->want | AVAHI_WATCH_ERR | AVAHI_WATCH_HUP);
        if (w->dead || !mine)
            continue;
        w->got = mine;
        w->cb(w, fp->fd, mine, w->userdata);
        w->got = 0;
    }
    fp->dispatching = false;
    sweep(fp);
    repoll(fp->owner, fp);
}

static fdpoll *poll_of(agent_uvavahi *p, int fd)
{
    fdpoll *fp;

    for (fp = p->polls; fp; fp = fp->next)
        if (fp->fd == fd)
            return fp;
    fp = calloc(1, sizeof(*fp));
    if (!fp)
        return NULL;
    if (uv_poll_init(p->loop, &fp->h, fd) < 0) {
        free(fp);
        return NULL;
    }
    fp->h.data = fp;
    fp->fd = fd;
    fp->owner = p;
    fp->next = p->polls;
    p->polls = fp;
    return fp;
}

static AvahiWatch *watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent event,
                             AvahiWatchCallback cb, void *userdata)
{
    agent_uvavahi *p = owner(api);
    struct AvahiWatch *w = calloc(1, sizeof(*w));
    fdpoll *fp;

    if (!w)
        return NULL;
    fp = poll_of(p, fd);
    if (!fp) {
        free(w);
        return NULL;
    }
    w->fp = fp;
    w->want = event;
    w->cb = cb;
    w->userdata = userdata;
    w->next = fp->watches;
    fp->watches = w;
    repoll(p, fp);
    return w;
}

static void watch_update(AvahiWatch *w, AvahiWatchEvent event)
{
    fdpoll *fp = w->fp;

    w->want = event;
    repoll(fp->owner, fp);
}

static AvahiWatchEvent watch_get_events(AvahiWatch *w)
{
    return w->got;
}

static void watch_free(AvahiWatch *w)
{
    fdpoll *fp = w->fp;

    w->dead = true;
    if (fp->dispatching)
        return; /* on_poll frees it once its callbacks returned */
    sweep(fp);
    repoll(fp->owner, fp);
}

/* ---- timeouts ---------------------------------------------------------------------- */

static uint64_t delay_ms(const struct timeval *tv)
{
    struct timeval now;
    int64_t us;

    gettimeofday(&now, NULL);
    us = ((int64_t)tv->tv_sec - now.tv_sec) * 1000000 + ((int64_t)tv->tv_usec - now.tv_usec);
    return us <= 0 ? 0 : (uint64_t)(us + 999) / 1000;
}

static void on_timer(uv_timer_t *t)
{
    AvahiTimeout *to = t->data;

    to->cb(to, to->userdata); /* (may update or free to) */
}

static void arm(AvahiTimeout *to, const struct timeval *tv)
{
    uv_timer_stop(&to->t);
    if (tv)
        uv_timer_start(&to->t, on_timer, delay_ms(tv), 0);
}

static AvahiTimeout *timeout_new(const AvahiPoll *api, const struct timeval *tv,
                                 AvahiTimeoutCallback cb, void *userdata)
{
    AvahiTimeout *to = calloc(1, sizeof(*to));

    if (!to)
        return NULL;
    uv_timer_init(owner(api)->loop, &to->t);
    to->t.data = to;
    to->cb = cb;
    to->userdata = userdata;
    arm(to, tv);
    return to;
}

static void timeout_update(AvahiTimeout *to, const struct timeval *tv)
{
    arm(to, tv);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timeout_free(AvahiTimeout *to)
{
    uv_timer_stop(&to->t);
    uv_close((uv_handle_t *)&to->t, on_timer_closed);
}

/* ---- the poll ------------------------------------------------------------------------ */

int agent_uvavahi_new(uv_loop_t *loop, agent_uvavahi **out)
{
    agent_uvavahi *p;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->api.userdata = p;
    p->api.watch_new = watch_new;
    p->api.watch_update = watch_update;
    p->api.watch_get_events = watch_get_events;
    p->api.watch_free = watch_free;
    p->api.timeout_new = timeout_new;
    p->api.timeout_update = timeout_update;
    p->api.timeout_free = timeout_free;
    *out = p;
    return 0;
}

const AvahiPoll *agent_uvavahi_poll(agent_uvavahi *p)
{
    return &p->api;
}

void agent_uvavahi_free(agent_uvavahi *p)
{
    if (!p)
        return;
    while (p->polls) { /* (none when the client was freed first) */
        fdpoll *fp = p->polls;
        for (struct AvahiWatch *w = fp->watches; w; w = w->next)
            w->dead = true;
        sweep(fp);
        close_poll(p, fp);
    }
    free(p);
}
