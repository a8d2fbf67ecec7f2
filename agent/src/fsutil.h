/* fsutil.h - small file-system helpers shared by the agent's modules. */
#ifndef AGENT_FSUTIL_H
#define AGENT_FSUTIL_H

#include <sys/types.h>

/* mkdir -p: parents get 0755, the directory itself `mode`. 0 or -errno. */
int agent_mkdir_p(const char *dir, mode_t mode);

#endif
