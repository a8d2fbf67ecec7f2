/* peercred.c - see peercred.h. */
#include "peercred.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
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
