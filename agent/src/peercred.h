/*
 * peercred.h - who is on the other end of a control connection, and may
 * they use the control API.
 *
 * On the Unix socket: root, or a member of the control group (the peer's
 * primary group, its supplementary groups at connect time (SO_PEERGROUPS),
 * or the groups the user database gives its user (getgrouplist)).
 *
 * Over TCP there are no credentials: the peer is "remote", named by its
 * address, and never root (pid -1, uid and gid (uid_t)-1 and (gid_t)-1).
 * What it may do is decided per request (control.remote_access).
 */
#ifndef AGENT_PEERCRED_H
#define AGENT_PEERCRED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* "[IPv6]:65535" with its NUL (46 + 8) and some room */
#define AGENT_PEER_ADDR_MAX 64

typedef struct agent_peer {
    pid_t pid;      /* -1 for a TCP caller */
    uid_t uid;      /* (uid_t)-1 for a TCP caller */
    gid_t gid;      /* (gid_t)-1 for a TCP caller */
    bool remote;    /* a TCP caller: no credentials; addr and ip say who it is */
    char addr[AGENT_PEER_ADDR_MAX]; /* TCP: "10.0.0.5:41234", "[fd00::5]:41234"; else "" */
    char ip[AGENT_PEER_ADDR_MAX];   /* TCP: "10.0.0.5", "fd00::5" (an IPv4-mapped IPv6
                                     * address as IPv4); else "" */
} agent_peer;

/*
 * Reads fd's peer credentials into *peer. Returns 1 when allowed, 0 when
 * not, a negative errno when the credentials cannot be read (refuse then).
 * have_group false: only root is allowed (the group does not exist).
 */
int agent_peer_check(int fd, bool have_group, gid_t group, agent_peer *peer);

/*
 * Fills *peer for the TCP connection fd: remote, with the peer's address.
 * 0, or a negative errno (the peer is gone: close the connection).
 */
int agent_peer_remote(int fd, agent_peer *peer);

/* For logs: "pid 12 uid 0", or the address of a TCP caller. */
void agent_peer_describe(const agent_peer *peer, char *out, size_t cap);

#endif
