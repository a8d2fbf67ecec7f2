/*
 * dnssd.h - what this node publishes by DNS-SD, and what it makes of the
 * agents it finds: pure logic, no I/O (discovery.h publishes and browses
 * through avahi; docs/discovery.md is the record format).
 *
 * Three service types, every record with TXT txtvers=1 and cluster=NAME:
 *   _dpr-agent._tcp   "<node>@<cluster>"               every agent
 *   _dpr-finder._tcp  "finder@<cluster>"               the agent serving the finder
 *   _dpr-cs._tcp      "<deployment>-<shard>@<cluster>" every running instance
 */
#ifndef AGENT_DNSSD_H
#define AGENT_DNSSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_DNSSD_AGENT "_dpr-agent._tcp"
#define AGENT_DNSSD_FINDER "_dpr-finder._tcp"
#define AGENT_DNSSD_CS "_dpr-cs._tcp"
#define AGENT_DNSSD_TXTVERS "1"
/* A DNS label: an instance name's most bytes. */
#define AGENT_DNSSD_NAME_MAX 63
#define AGENT_DNSSD_TXT_MAX 12
/* One "key=value" string (a TXT string holds at most 255 bytes). */
#define AGENT_DNSSD_TXT_LEN 128
#define AGENT_DNSSD_ADDR_MAX 64

typedef struct agent_dnssd_service {
    char type[24];
    char name[AGENT_DNSSD_NAME_MAX + 1];
    uint16_t port;
    size_t ntxt;
    char txt[AGENT_DNSSD_TXT_MAX][AGENT_DNSSD_TXT_LEN];
} agent_dnssd_service;

/*
 * Starts s: type, the instance name "<who>@<cluster>", port, and the TXT
 * strings txtvers and cluster. A name longer than a label keeps its end
 * ("@<cluster>") and shortens who, ending it with 8 hex digits of who's
 * hash so that names stay unique. 0, or -EINVAL (cluster too long: it is
 * at most 63 characters by the config's rules, so never).
 */
int agent_dnssd_init(agent_dnssd_service *s, const char *type, const char *who,
                     const char *cluster, uint16_t port);
/* Appends "key=value": 0, -ENOSPC (too many strings) or -E2BIG (too long). */
int agent_dnssd_txt(agent_dnssd_service *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value of key in s's TXT strings, or NULL. */
const char *agent_dnssd_txt_get(const agent_dnssd_service *s, const char *key);
/* Same type, name, port and TXT strings (in order)? */
bool agent_dnssd_same(const agent_dnssd_service *a, const agent_dnssd_service *b);

/* ---- agents found ------------------------------------------------------------ */

typedef enum agent_dnssd_state {
    AGENT_DNSSD_UNKNOWN,
    AGENT_DNSSD_SINGLE, /* a node without Raft */
    AGENT_DNSSD_FRESH,  /* in a cluster, not a member yet (no Raft log) */
    AGENT_DNSSD_MEMBER, /* a member of its cluster's Raft group */
} agent_dnssd_state;

/* "single", "fresh", "member"; anything else is UNKNOWN. */
agent_dnssd_state agent_dnssd_state_parse(const char *s);
const char *agent_dnssd_state_name(agent_dnssd_state s);

/* An agent's record as found (by browsing), of this node's cluster. */
typedef struct agent_dnssd_peer {
    char node[AGENT_DNSSD_NAME_MAX + 1];
    char raft[AGENT_DNSSD_ADDR_MAX];   /* its Raft address ("" none) */
    char finder[AGENT_DNSSD_ADDR_MAX]; /* its finder port's address */
    agent_dnssd_state state;
} agent_dnssd_peer;

/*
 * Reads an _dpr-agent._tcp record's TXT strings (n of them, "key=value"):
 * 1 and *p filled when it is an agent of cluster with a Raft address;
 * 0 when it is not (another cluster, another txtvers, no raft=, a node
 * without Raft); -EINVAL when it is malformed (a Raft address that is no
 * IPV4:PORT, a missing node=).
 */
int agent_dnssd_peer_parse(char *const *txt, size_t n, const char *cluster,
                           agent_dnssd_peer *p);

typedef enum agent_dnssd_action {
    AGENT_DNSSD_WAIT,      /* not enough is known yet */
    AGENT_DNSSD_BOOTSTRAP, /* start a new cluster of the addresses given */
    AGENT_DNSSD_JOIN,      /* ask the members given to be added */
} agent_dnssd_action;

/*
 * What a fresh node (no Raft log, no seed list) with Raft address self does
 * about the agents of its cluster it found (self's own record among them
 * or not):
 *  - members found: JOIN, addrs = their Raft addresses;
 *  - else, with expect > 0 and at least expect fresh agents (self
 *    included): BOOTSTRAP when self is among the expect lowest addresses
 *    (byte order), addrs = those; a node left out WAITs (for the others'
 *    cluster to appear, then joins);
 *  - else WAIT.
 * The addresses are copied into addrs (at most cap); *n how many.
 */
agent_dnssd_action agent_dnssd_decide(const char *self, unsigned expect,
                                      const agent_dnssd_peer *peers, size_t npeers,
                                      char (*addrs)[AGENT_DNSSD_ADDR_MAX], size_t cap,
                                      size_t *n);

#endif
