/* insttls.c - see insttls.h. */
#include "insttls.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "replica.h"

/* a certificate, key, CA bundle or CRL: far below this */
#define FILE_MAX (1u << 20)

int agent_insttls_dir(const agent_config *c, char *out, size_t cap)
{
    return dpr_path_join(out, cap, c->instance_dir, "tls");
}

/* The group the instances run as, or -1: none (or the agent is not root
 * and could not give it). */
static gid_t instances_gid(void)
{
    struct group *gr = geteuid() == 0 ? getgrnam(AGENT_CS_GROUP) : NULL;

    return gr ? gr->gr_gid : (gid_t)-1;
}

/* Gives path to group gid with mode (owner's alone when gid is -1). */
static int share(const char *path, gid_t gid, mode_t mode)
{
    if (gid == (gid_t)-1)
        return 0;
    if (chown(path, (uid_t)-1, gid) < 0 || chmod(path, mode) < 0)
        return -errno;
    return 0;
}

static int copy_one(const char *src, const char *dir, const char *name, gid_t gid,
                    mode_t shared_mode, dpr_err *err)
{
    char path[PATH_MAX], *data = NULL;
    size_t len = 0;
    int fd, rc;

    rc = dpr_path_join(path, sizeof(path), dir, name);
    if (rc < 0)
        return dpr_err_set(err, rc, "%s/%s: path too long", dir, name);
    fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dpr_err_set(err, -errno, "cannot read %s: %s", src, strerror(errno));
    rc = dpr_read_fd(fd, FILE_MAX, &data, &len);
    close(fd);
    if (rc < 0)
        return dpr_err_set(err, rc, "cannot read %s: %s", src, strerror(-rc));
    /* written 0600, then given to the group: never readable by more */
    rc = dpr_replace_file(path, data, len, 0600, false, err);
    free(data);
    if (rc < 0)
        return rc;
    rc = share(path, gid, shared_mode);
    if (rc < 0)
        return dpr_err_set(err, rc, "cannot give %s to group %s: %s", path, AGENT_CS_GROUP,
                           strerror(-rc));
    return 0;
}

int agent_insttls_write(const agent_config *c, dpr_err *err)
{
    const struct {
        const char *src, *name;
        mode_t mode;
    } files[] = {
        { c->tls_cert, AGENT_INSTTLS_CERT, 0644 }, { c->tls_key, AGENT_INSTTLS_KEY, 0640 },
        { c->tls_ca, AGENT_INSTTLS_CA, 0644 },     { c->tls_crl, AGENT_INSTTLS_CRL, 0644 },
    };
    char dir[PATH_MAX];
    gid_t gid = instances_gid();
    int rc;

    rc = agent_insttls_dir(c, dir, sizeof(dir));
    if (rc < 0)
        return dpr_err_set(err, rc, "%s/tls: path too long", c->instance_dir);
    rc = dpr_mkdir_p(dir, 0700, err);
    if (rc < 0)
        return rc;
    /* the instance directory (0750 root's, the instance files 0600 in it):
     * the group may pass through it to tls/, not list it */
    rc = share(c->instance_dir, gid, 0710);
    if (rc == 0)
        rc = share(dir, gid, 0750);
    if (rc < 0)
        return dpr_err_set(err, rc, "cannot give %s to group %s: %s", dir, AGENT_CS_GROUP,
                           strerror(-rc));
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (!files[i].src || !files[i].src[0])
            continue;
        rc = copy_one(files[i].src, dir, files[i].name, gid, files[i].mode, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}
