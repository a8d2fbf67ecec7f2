/* domain.c - see dpr/domain.h. */
#include "dpr/domain.h"

bool dpr_domain_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > DPR_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

uint64_t dpr_domain_id(const char *name, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= UINT64_C(1099511628211);
    }
    return h ? h : 1;
}
