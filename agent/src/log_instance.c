/* log_instance.c - see log_instance.h. */
#include "log_instance.h"

#include <stdarg.h>
#include <stdio.h>

#include "units.h"

static void log_v(int level, const char *instance, const char *msgid, const char *fmt,
                  va_list ap) __attribute__((format(printf, 4, 0)));

static void log_v(int level, const char *instance, const char *msgid, const char *fmt,
                  va_list ap)
{
    /* instance names are short (an instance's or a unit's, at most ~100 bytes) */
    char inst_field[160], unit_field[200], id_field[64], msg[2048];
    const char *fields[] = { inst_field, unit_field, msgid ? id_field : NULL, NULL };

    snprintf(inst_field, sizeof(inst_field), "DPR_INSTANCE=%s", instance);
    snprintf(unit_field, sizeof(unit_field), "DPR_UNIT=" AGENT_UNIT_PREFIX "%s" AGENT_UNIT_SUFFIX,
             instance);
    if (msgid)
        snprintf(id_field, sizeof(id_field), "MESSAGE_ID=%s", msgid);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    dpr_log_fields(level, fields, "%s: %s", instance, msg);
}

void agent_log_instance(int level, const char *instance, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_v(level, instance, NULL, fmt, ap);
    va_end(ap);
}

void agent_log_instance_id(int level, const char *instance, const char *msgid,
                           const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_v(level, instance, msgid, fmt, ap);
    va_end(ap);
}
