/* fsutil.h - small file-system helpers shared by the agent's modules. */
#ifndef AGENT_FSUTIL_H
#define AGENT_FSUTIL_H

#include <sys/types.h>

/* mkdir -p: parents get 0755, the directory itself `mode`. 0 or -errno. */
int agent_mkdir_p(const char *dir, mode_t mode);

/* write(2) until all of `len` bytes are written (retries EINTR and short
 * writes). 0 or -errno. */
int agent_write_all(int fd, const void *data, size_t len);

#endif
