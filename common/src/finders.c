/* finders.c - a cluster's finder addresses and redirects (see finders.h). */
#include "common/finders.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

static void set_text(dpr_finders *f)
{
    const dpr_hostport *hp = dpr_finders_current(f);

    if (strchr(hp->host, ':'))
        snprintf(f->text, sizeof(f->text), "[%s]:%u", hp->host, hp->port);
    else
        snprintf(f->text, sizeof(f->text), "%s:%u", hp->host, hp->port);
}

int dpr_finders_parse(const char *list, dpr_finders *out, dpr_err *err)
{
    const char *p = list;

    memset(out, 0, sizeof(*out));
    if (!list || !*list)
        return dpr_err_set(err, -EINVAL, "finder address: empty (expected HOST:PORT[,...])");
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && *p == ' ')
            p++, n--;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (out->n == DPR_FINDERS_MAX)
            return dpr_err_set(err, -EINVAL, "finder addresses: more than %d",
                               DPR_FINDERS_MAX);
        if (dpr_hostport_parse_n(p, n, 0, &out->list[out->n], err) < 0) {
            dpr_err_prefix(err, "finder address %zu", out->n + 1);
            return -EINVAL;
        }
        out->n++;
        if (!end)
            break;
        p = end + 1;
    }
    dpr_finders_reset(out);
    return 0;
}

void dpr_finders_reset(dpr_finders *f)
{
    f->cur = 0;
    f->redirected = false;
    f->hops = 0;
    set_text(f);
}

const dpr_hostport *dpr_finders_current(const dpr_finders *f)
{
    return f->redirected ? &f->leader : &f->list[f->cur];
}

const char *dpr_finders_text(const dpr_finders *f)
{
    return f->text;
}

void dpr_finders_next(dpr_finders *f)
{
    if (f->redirected)
        f->redirected = false; /* back to the list where it was */
    else if (f->n > 0)
        f->cur = (f->cur + 1) % f->n;
    set_text(f);
}

void dpr_finders_answered(dpr_finders *f)
{
    f->hops = 0;
}

static bool starts(const char *text, size_t n, const char *word)
{
    size_t k = strlen(word);

    return n >= k && strncmp(text, word, k) == 0 && (n == k || text[k] == ' ');
}

dpr_finders_answer dpr_finders_on_error(dpr_finders *f, const char *text, size_t n)
{
    dpr_hostport hp;
    size_t k = strlen("NOTLEADER ");

    if (starts(text, n, "TRYAGAIN")) {
        f->hops = 0;
        dpr_finders_next(f);
        return DPR_FINDERS_RETRY;
    }
    if (!starts(text, n, "NOTLEADER"))
        return DPR_FINDERS_OTHER;
    if (n <= k || dpr_hostport_parse_n(text + k, n - k, 0, &hp, NULL) < 0 ||
        ++f->hops > DPR_FINDERS_MAX_HOPS) {
        /* a garbled or endless redirect: pause, then start over */
        f->hops = 0;
        dpr_finders_next(f);
        return DPR_FINDERS_RETRY;
    }
    f->leader = hp;
    f->redirected = true;
    set_text(f);
    return DPR_FINDERS_MOVED;
}
