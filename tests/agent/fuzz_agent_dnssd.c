/*
 * fuzz_agent_dnssd.c - an agent's DNS-SD record as another host published it
 * (dnssd.h, agent_dnssd_peer_parse): the input's lines are the TXT
 * strings. Nothing may crash, and an accepted record must keep every rule
 * (a node name, an IPV4:PORT Raft address, NUL-terminated fields), and the
 * decision made of it must name only addresses it was given.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnssd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINES 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *lines[LINES], *save = NULL;
    char addrs[4][AGENT_DNSSD_ADDR_MAX];
    agent_dnssd_peer p[2];
    size_t n = 0, k;
    int rc;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *l = strtok_r(text, "\n", &save); l && n < LINES; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    rc = agent_dnssd_peer_parse(lines, n, "demo", &p[0]);
    if (rc != 0 && rc != 1 && rc != -EINVAL)
        abort();
    if (rc == 1) {
        if (!p[0].node[0] || !strchr(p[0].raft, ':') ||
            memchr(p[0].node, '\0', sizeof(p[0].node)) == NULL ||
            memchr(p[0].finder, '\0', sizeof(p[0].finder)) == NULL)
            abort();
        p[1] = p[0];
        agent_dnssd_decide("10.0.0.1:7400", 2, p, 2, addrs, 4, &k);
        for (size_t i = 0; i < k; i++)
            if (strcmp(addrs[i], p[0].raft) != 0 && strcmp(addrs[i], "10.0.0.1:7400") != 0)
                abort();
    }
    free(text);
    return 0;
}
