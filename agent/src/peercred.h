/*
 * peercred.h - who is on the other end of a Unix socket, and may they use
 * the control API: root, or a member of the control group (the peer's
 * primary group, its supplementary groups at connect time (SO_PEERGROUPS),
 * or the groups the user database gives its user (getgrouplist)).
 */
#ifndef AGENT_PEERCRED_H
#define AGENT_PEERCRED_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct agent_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} agent_peer;

/*
 * Reads fd's peer credentials into *peer. Returns 1 when allowed, 0 when
 * not, a negative errno when the credentials cannot be read (refuse then).
 * have_group false: only root is allowed (the group does not exist).
 */
int agent_peer_check(int fd, bool have_group, gid_t group, agent_peer *peer);

#endif
