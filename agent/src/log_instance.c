/* log_instance.c - see log_instance.h. */
#include "log_instance.h"

#include <stdarg.h>
#include <stdio.h>

#include "units.h"

void agent_log_instance(int level, const char *instance, const char *fmt, ...)
{
    /* instance names are short (an instance's or a unit's, at most ~100 bytes) */
    char inst_field[160], unit_field[200], msg[2048];
    const char *fields[] = { inst_field, unit_field, NULL };
    va_list ap;

    snprintf(inst_field, sizeof(inst_field), "DPR_INSTANCE=%s", instance);
    snprintf(unit_field, sizeof(unit_field), "DPR_UNIT=" AGENT_UNIT_PREFIX "%s" AGENT_UNIT_SUFFIX,
             instance);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dpr_log_fields(level, fields, "%s: %s", instance, msg);
}
