/* health.c - see health.h. */
#include "health.h"

#include <string.h>

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

const char *agent_health_name(agent_health h)
{
    switch (h) {
    case AGENT_HEALTH_OK:
        return "ok";
    case AGENT_HEALTH_REFUSING_WRITES:
        return "refusing-writes";
    case AGENT_HEALTH_FINDER_LOST_WORKER:
        return "finder-lost-worker";
    case AGENT_HEALTH_FAILED:
        return "failed";
    }
    return "?";
}

bool agent_status_is_failure(const char *text)
{
    return starts_with(text, "failed:") || starts_with(text, "start-up failed");
}

agent_health agent_health_of(const char *active_state, const char *sub_state, const char *text,
                             agent_health previous)
{
    /* Restart=on-failure: auto-restart follows a failure only */
    if (strcmp(active_state, "failed") == 0 || strcmp(sub_state, "auto-restart") == 0)
        return AGENT_HEALTH_FAILED;
    if (agent_status_is_failure(text))
        return AGENT_HEALTH_FAILED;
    if (starts_with(text, "refusing writes"))
        return AGENT_HEALTH_REFUSING_WRITES;
    if (starts_with(text, "commits stopped"))
        return AGENT_HEALTH_FINDER_LOST_WORKER;
    if (text[0])
        return AGENT_HEALTH_OK;
    /* no text: active means READY=1 came (recovered); otherwise wait */
    return strcmp(active_state, "active") == 0 ? AGENT_HEALTH_OK : previous;
}
