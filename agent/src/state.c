/* state.c - see state.h. */
#include "state.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void agent_state_init(agent_state *st)
{
    memset(st, 0, sizeof(*st));
    st->next_worker = 1;
}

void agent_state_free(agent_state *st)
{
    agent_spec_free(&st->spec);
    free(st->inst);
    free(st->retiring);
    free(st->layouts);
    free(st->rollouts);
    agent_state_init(st);
}

bool agent_instance_outdated(const agent_instance *in)
{
    return strcmp(in->impl, in->run.impl) != 0 || strcmp(in->version, in->run.version) != 0 ||
           in->checkpoint_interval_ms != in->run.checkpoint_interval_ms ||
           in->max_clients != in->run.max_clients || in->maxmemory != in->run.maxmemory ||
           strcmp(in->checkpoint_mode, in->run.checkpoint_mode) != 0 ||
           strcmp(in->tls_clients, in->run.tls_clients) != 0;
}

void agent_instance_set_running(agent_instance *in)
{
    in->run.generation = in->generation;
    memcpy(in->run.impl, in->impl, sizeof(in->run.impl));
    memcpy(in->run.version, in->version, sizeof(in->run.version));
    in->run.checkpoint_interval_ms = in->checkpoint_interval_ms;
    in->run.max_clients = in->max_clients;
    in->run.maxmemory = in->maxmemory;
    memcpy(in->run.checkpoint_mode, in->checkpoint_mode, sizeof(in->run.checkpoint_mode));
    memcpy(in->run.tls_clients, in->tls_clients, sizeof(in->run.tls_clients));
}

void agent_instance_running_view(const agent_instance *in, agent_instance *out)
{
    *out = *in;
    memcpy(out->impl, in->run.impl, sizeof(out->impl));
    memcpy(out->version, in->run.version, sizeof(out->version));
    out->checkpoint_interval_ms = in->run.checkpoint_interval_ms;
    out->max_clients = in->run.max_clients;
    out->maxmemory = in->run.maxmemory;
    memcpy(out->checkpoint_mode, in->run.checkpoint_mode, sizeof(out->checkpoint_mode));
    memcpy(out->tls_clients, in->run.tls_clients, sizeof(out->tls_clients));
}

bool agent_deploy_process_differs(const agent_deploy *a, const agent_deploy *b)
{
    return strcmp(a->impl, b->impl) != 0 || strcmp(a->version, b->version) != 0 ||
           a->checkpoint_interval_ms != b->checkpoint_interval_ms ||
           a->max_clients != b->max_clients || a->maxmemory != b->maxmemory ||
           strcmp(a->checkpoint_mode, b->checkpoint_mode) != 0 ||
           strcmp(a->tls_clients, b->tls_clients) != 0;
}

agent_rollout_rec *agent_state_rollout(const agent_state *st, const char *deployment)
{
    for (size_t i = 0; i < st->nrollouts; i++)
        if (strcmp(st->rollouts[i].deployment, deployment) == 0)
            return &st->rollouts[i];
    return NULL;
}

int agent_state_rollout_add(agent_state *st, const char *deployment, agent_rollout_rec **out)
{
    agent_rollout_rec *v;

    *out = agent_state_rollout(st, deployment);
    if (*out)
        return 0;
    if (strlen(deployment) > AGENT_DEPLOY_NAME_MAX)
        return -EINVAL;
    v = realloc(st->rollouts, (st->nrollouts + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    st->rollouts = v;
    *out = &v[st->nrollouts++];
    memset(*out, 0, sizeof(**out));
    memcpy((*out)->deployment, deployment, strlen(deployment) + 1);
    return 0;
}

static int find(const agent_instance *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return (int)i;
    return -1;
}

int agent_state_find(const agent_state *st, const char *name)
{
    return find(st->inst, st->ninst, name);
}

int agent_state_find_retiring(const agent_state *st, const char *name)
{
    return find(st->retiring, st->nretiring, name);
}

void agent_state_drop_retiring(agent_state *st, const char *name, uint64_t worker)
{
    size_t i;

    for (i = 0; i < st->nretiring; i++)
        if (strcmp(st->retiring[i].name, name) == 0 && st->retiring[i].worker == worker)
            break;
    if (i == st->nretiring)
        return;
    /* every worker id handed out is below next_worker (never reused) */
    assert(st->retiring[i].worker >= 1 && st->retiring[i].worker < st->next_worker);
    memmove(&st->retiring[i], &st->retiring[i + 1],
            (st->nretiring - (size_t)i - 1) * sizeof(*st->retiring));
    st->nretiring--;
}

agent_layout *agent_state_layout(const agent_state *st, const char *deployment)
{
    for (size_t i = 0; i < st->nlayouts; i++)
        if (strcmp(st->layouts[i].deployment, deployment) == 0)
            return &st->layouts[i];
    return NULL;
}

static int cmp_inst(const void *a, const void *b)
{
    return strcmp(((const agent_instance *)a)->name, ((const agent_instance *)b)->name);
}

void agent_instances_sort(agent_instance *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_inst);
}

int agent_token_new(char out[AGENT_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[AGENT_TOKEN_LEN / 2];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[AGENT_TOKEN_LEN] = '\0';
    explicit_bzero(raw, sizeof(raw));
    return 0;
}

bool agent_token_valid(const char *s)
{
    for (size_t i = 0; i < AGENT_TOKEN_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[AGENT_TOKEN_LEN] == '\0';
}
