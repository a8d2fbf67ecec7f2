/* peercred.c - see peercred.h. */
#include "peercred.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* Is user uid (primary group gid) a member of group in the user database? */
static bool user_in_group(uid_t uid, gid_t gid, gid_t group)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    gid_t groups[256], *many = NULL;
    int n = 256;
    bool found = false;

    if (gid == group)
        return true;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
        return false;
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0) {
        many = malloc((size_t)n * sizeof(*many));
        if (!many || getgrouplist(pw.pw_name, pw.pw_gid, many, &n) < 0) {
            free(many);
            return false;
        }
    }
    for (int i = 0; i < n; i++)
        if ((many ? many[i] : groups[i]) == group)
            found = true;
    free(many);
    return found;
}

/* The peer's supplementary groups when it connected. */
static bool peer_groups_have(int fd, gid_t group)
{
    gid_t groups[256];
    socklen_t len = sizeof(groups);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
        return false; /* ERANGE (more than 256) or an old kernel: the database decides */
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == group)
            return true;
    return false;
}

int agent_peer_check(int fd, bool have_group, gid_t group, agent_peer *peer)
{
    struct ucred uc;
    socklen_t len = sizeof(uc);

    memset(peer, 0, sizeof(*peer));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return -errno;
    peer->pid = uc.pid;
    peer->uid = uc.uid;
    peer->gid = uc.gid;
    if (uc.uid == 0)
        return 1;
    if (!have_group)
        return 0;
    if (uc.gid == group || peer_groups_have(fd, group) ||
        user_in_group(uc.uid, uc.gid, group))
        return 1;
    return 0;
}

int agent_peer_remote(int fd, agent_peer *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    const void *ip;
    unsigned port;
    bool v6 = false;

    memset(peer, 0, sizeof(*peer));
    peer->pid = -1;
    peer->uid = (uid_t)-1;
    peer->gid = (gid_t)-1;
    peer->remote = true;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        ip = &in->sin_addr;
        port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        port = ntohs(in6->sin6_port);
        /* an IPv4 caller of a dual-stack listener: the same peer as over IPv4 */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            ip = in6->sin6_addr.s6_addr + 12;
        } else {
            ip = &in6->sin6_addr;
            v6 = true;
        }
    } else {
        return -EAFNOSUPPORT;
    }
    if (!inet_ntop(v6 ? AF_INET6 : AF_INET, ip, peer->ip, sizeof(peer->ip)))
        return -errno;
    snprintf(peer->addr, sizeof(peer->addr), v6 ? "[%s]:%u" : "%s:%u", peer->ip, port);
    return 0;
}

void agent_peer_describe(const agent_peer *peer, char *out, size_t cap)
{
    if (peer->remote)
        snprintf(out, cap, "%s", peer->addr);
    else
        snprintf(out, cap, "pid %d uid %u", (int)peer->pid, (unsigned)peer->uid);
}
