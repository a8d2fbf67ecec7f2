/*
 * domain.h - DPR domains: the unit of recovery.
 *
 * Every worker belongs to exactly one domain (in a cluster: a deployment,
 * named after it). A domain has its own world-lines, cut and recovery: a
 * crash, restart or roll-out in one domain never rolls back another. A
 * session spans one domain; its dependencies, versions and world-line mean
 * nothing in another. The finder keeps one core per domain (its commands
 * name the domain); a batch header carries the id of its session's domain,
 * and a worker refuses batches of any other domain.
 *
 * A domain name is 1..DPR_DOMAIN_MAX bytes of [a-z0-9._-], starting with a
 * letter or digit. Tools that have no domain of their own (the standalone
 * dpr-finder's clients, tests, benchmarks) use DPR_DOMAIN_DEFAULT.
 */
#ifndef DPR_DOMAIN_H
#define DPR_DOMAIN_H

#include "dpr/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DPR_DOMAIN_MAX 63
#define DPR_DOMAIN_DEFAULT "default"

/* Whether name[0..len) is a valid domain name. */
DPR_EXPORT bool dpr_domain_valid(const char *name, size_t len);

/* The id a batch header carries for the domain: FNV-1a 64 of the name (0,
 * which means "none", becomes 1). Only meaningful for a valid name. */
DPR_EXPORT uint64_t dpr_domain_id(const char *name, size_t len);

#endif
