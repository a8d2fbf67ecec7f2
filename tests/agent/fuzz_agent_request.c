/*
 * fuzz_agent_request.c - dpr-agent's control requests: one line of bytes
 * through the request parser, then (for apply/plan) the spec checker and a
 * plan against a small recorded state; also the state-file reader on the
 * same bytes (with what each instance runs and the roll-out records). Nothing may crash, leak or accept a spec that breaks a rule.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "proto.h"
#include "spec.h"
#include "statefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_spec(const agent_spec *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!agent_name_valid(s->d[i].name, AGENT_DEPLOY_NAME_MAX) || s->d[i].shards < 1 ||
            s->d[i].shards > AGENT_SHARDS_MAX ||
            s->d[i].checkpoint_interval_ms < AGENT_INTERVAL_MIN ||
            s->d[i].checkpoint_interval_ms > AGENT_INTERVAL_MAX ||
            s->d[i].max_clients < AGENT_MAX_CLIENTS_MIN ||
            s->d[i].max_clients > AGENT_MAX_CLIENTS_MAX || !s->d[i].version[0] ||
            (s->d[i].maxmemory != 0 && (s->d[i].maxmemory < AGENT_MAXMEMORY_MIN ||
                                        s->d[i].maxmemory > AGENT_MAXMEMORY_MAX)) ||
            strcmp(s->d[i].impl, "dpr-kv") != 0 ||
            (s->d[i].replicas != AGENT_REPLICAS_AUTO &&
             (s->d[i].replicas < 0 || s->d[i].replicas > AGENT_REPLICAS_MAX)) ||
            s->d[i].selector.nnodes > AGENT_SELECTOR_MAX ||
            s->d[i].selector.nlabels > AGENT_SELECTOR_MAX ||
            s->d[i].rollout.max_unavailable < 1 ||
            s->d[i].rollout.max_unavailable > AGENT_SHARDS_MAX ||
            s->d[i].rollout.partition > AGENT_SHARDS_MAX ||
            s->d[i].rollout.min_ready_seconds > AGENT_ROLLOUT_SECONDS_MAX ||
            s->d[i].rollout.progress_deadline_seconds < 1 ||
            s->d[i].rollout.progress_deadline_seconds > AGENT_ROLLOUT_SECONDS_MAX ||
            s->d[i].rollout.resumed > AGENT_ROLLOUT_RESUMED_MAX ||
            (s->d[i].tls_clients[0] && !agent_tls_clients_valid(s->d[i].tls_clients)))
            abort();
        for (size_t k = 0; k < s->d[i].selector.nlabels; k++)
            if (!agent_label_valid(s->d[i].selector.labels[k]))
                abort();
        for (size_t k = 0; k < i; k++)
            if (strcmp(s->d[i].name, s->d[k].name) == 0)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const impls[] = { "dpr-kv" };
    const agent_spec_rules rules = { "demo", impls, 1, 0, 0, false };
    const agent_alloc alloc = { .port_min = 7100, .port_max = 7163 };
    agent_request req;
    json_t *reply = NULL, *j;
    agent_problems p;
    agent_state st, next;
    agent_plan plan;
    agent_spec spec;
    dpr_err err;
    dpr_buf line = DPR_BUF_INIT;

    if (agent_request_parse((const char *)data, size, &req, &reply) == 0) {
        if (req.spec) {
            agent_problems_init(&p);
            if (agent_spec_parse(req.spec, &rules, &spec, &p) == 0) {
                check_spec(&spec);
                agent_state_init(&st);
                if (agent_plan_make(&st, &spec, &alloc, &next, &plan) == 0) {
                    j = agent_plan_to_json(&plan);
                    json_decref(j);
                    agent_plan_free(&plan);
                    agent_state_free(&next);
                }
                agent_spec_free(&spec);
            } else if (p.n == 0 && !p.oom) {
                abort(); /* rejected without saying why */
            } else {
                reply = agent_reply_error(req.id, AGENT_E_SPEC_INVALID, "x",
                                          agent_problems_json(&p));
            }
            agent_problems_free(&p);
        }
        agent_request_free(&req);
    }
    if (reply) {
        if (agent_json_line(reply, &line) == 0 &&
            (line.len == 0 || line.data[line.len - 1] != '\n' ||
             memchr(line.data, '\n', line.len - 1)))
            abort(); /* a reply is exactly one line */
        dpr_buf_free(&line);
        json_decref(reply);
    }
    j = json_loadb((const char *)data, size, 0, NULL);
    if (j) {
        if (agent_state_from_json(j, &st, &err) >= 0) { /* 1: tokens were made */
            /* the state's own spec again: nothing changes, records kept */
            if (st.spec.name && !st.placed &&
                agent_plan_make(&st, &st.spec, &alloc, &next, &plan) == 0) {
                if (agent_plan_changed(&plan) || next.nrollouts != st.nrollouts)
                    abort();
                agent_plan_free(&plan);
                agent_state_free(&next);
            }
            agent_state_free(&st);
        }
        json_decref(j);
    }
    return 0;
}
