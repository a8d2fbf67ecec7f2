/* test_agent_config.c - the agent's libconfig file: defaults, every
 * setting, errors with line numbers, unknown settings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static char path[64];

static void write_conf(const char *text)
{
    FILE *f;

    if (path[0])
        unlink(path); /* the previous test's file, if it kept it */
    snprintf(path, sizeof(path), "/tmp/dpr-test-agent-conf-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static int has(const agent_problems *p, int line, const char *needle)
{
    char where[128];

    snprintf(where, sizeof(where), "%s:%d", path, line);
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].where, where) == 0 && strstr(p->v[i].message, needle))
            return 1;
    fprintf(stderr, "    wanted line %d: %s; got:\n", line, needle);
    for (size_t i = 0; i < p->n; i++)
        fprintf(stderr, "    %s: %s\n", p->v[i].where, p->v[i].message);
    return 0;
}

TEST(defaults)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"demo\";\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(p.n, 0);
    CHECK(strcmp(c.cluster, "demo") == 0);
    CHECK(c.node_name && *c.node_name);
    CHECK(strcmp(c.node_address, "127.0.0.1") == 0);
    CHECK(strcmp(c.state_dir, "/var/lib/dpr") == 0);
    CHECK(strcmp(c.control_socket, "/run/dpr/agent.sock") == 0);
    CHECK(strcmp(c.control_group, "dpr") == 0);
    CHECK_EQ_INT(c.control_max_connections, 256);
    CHECK_EQ_INT(c.control_max_per_user, 32);
    CHECK_EQ_INT(c.control_root_reserved, 16);
    CHECK_EQ_INT(c.control_idle_timeout_ms, 10000);
    CHECK_EQ_INT(c.control_max_input_bytes, 16 * 1024 * 1024);
    CHECK(strcmp(c.finder_listen, "127.0.0.1:7000") == 0);
    CHECK(strcmp(c.instance_dir, "/run/dpr/instances") == 0);
    CHECK(strcmp(c.cs_address, "127.0.0.1") == 0);
    CHECK_EQ_INT(c.port_min, 7100);
    CHECK_EQ_INT(c.port_max, 7999);
    CHECK_EQ_INT(c.checkpoint_interval_ms, 100);
    CHECK_EQ_INT(c.max_clients, 10000);
    CHECK_EQ_INT(c.nimpls, 1);
    CHECK(strcmp(agent_config_impl_exec(&c, "dpr-kv"), DPR_BINDIR "/dpr-kv") == 0);
    CHECK(agent_config_impl_exec(&c, "x") == NULL);
    CHECK(!c.verbose);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
}

TEST(everything_set)
{
    agent_config c;
    agent_problems p;

    write_conf("# comment\n"
               "cluster = \"prod-1\";\n"
               "node = { name = \"n1.example\"; address = \"10.0.0.5\"; };\n"
               "state_directory = \"/srv/dpr\";\n"
               "control = { socket = \"/tmp/x.sock\"; group = \"wheel\"; };\n"
               "finder = { listen = \"0.0.0.0:7500\"; };\n"
               "cachestores = {\n"
               "  instance_directory = \"/run/x\";\n"
               "  listen_address = \"10.0.0.6\";\n"
               "  port_min = 8000; port_max = 8010;\n"
               "  checkpoint_interval_ms = 20; max_clients = 50;\n"
               "  impls = { dpr-kv = \"/opt/dpr-kv\"; my_kv = \"/opt/my\"; };\n"
               "};\n"
               "log = { verbose = true; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    for (size_t i = 0; i < p.n; i++)
        fprintf(stderr, "    %s: %s\n", p.v[i].where, p.v[i].message);
    CHECK(strcmp(c.cluster, "prod-1") == 0);
    CHECK(strcmp(c.node_name, "n1.example") == 0);
    CHECK(strcmp(c.node_address, "10.0.0.5") == 0);
    CHECK(strcmp(c.cs_address, "10.0.0.6") == 0);
    CHECK(strcmp(c.state_dir, "/srv/dpr") == 0);
    CHECK(strcmp(c.control_socket, "/tmp/x.sock") == 0);
    CHECK(strcmp(c.control_group, "wheel") == 0);
    CHECK(strcmp(c.finder_listen, "0.0.0.0:7500") == 0);
    CHECK(strcmp(c.instance_dir, "/run/x") == 0);
    CHECK(strcmp(agent_config_impl_exec(&c, "dpr-kv"), "/opt/dpr-kv") == 0);
    CHECK_EQ_INT(c.port_min, 8000);
    CHECK_EQ_INT(c.port_max, 8010);
    CHECK_EQ_INT(c.checkpoint_interval_ms, 20);
    CHECK_EQ_INT(c.max_clients, 50);
    CHECK_EQ_INT(c.nimpls, 2);
    CHECK(strcmp(agent_config_impl_exec(&c, "my_kv"), "/opt/my") == 0);
    CHECK(c.verbose);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
}

TEST(cs_address_follows_node)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"a\"; node = { address = \"10.1.1.1\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(strcmp(c.cs_address, "10.1.1.1") == 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
}

TEST(every_error_with_its_line)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"Bad Name\";\n"                       /* 1 */
               "clustr = 1;\n"                                  /* 2 */
               "state_directory = \"relative\";\n"              /* 3 */
               "control = { socket = 5; group = \"\"; };\n"     /* 4 */
               "finder = { listen = \"nope\"; };\n"             /* 5 */
               "cachestores = {\n"                              /* 6 */
               "  port_min = 9000;\n"                           /* 7 */
               "  port_max = 70000;\n"                          /* 8 */
               "  checkpoint_interval_ms = 1;\n"                /* 9 */
               "  impls = { dpr-kv = \"relative/kv\"; x = 3; };\n" /* 10 */
               "  typo = true;\n"                               /* 11 */
               "};\n"                                           /* 12 */
               "log = 3;\n"                                     /* 13 */
               "node = { name = \"a b\"; };\n");                /* 14 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 1, "'cluster' must match"));
    CHECK(has(&p, 2, "unknown setting 'clustr'"));
    CHECK(has(&p, 3, "absolute path"));
    CHECK(has(&p, 4, "'control.socket' must be a string"));
    CHECK(has(&p, 4, "'control.group' must not be empty"));
    CHECK(has(&p, 5, "'finder.listen'"));
    CHECK(has(&p, 8, "out of range"));
    CHECK(has(&p, 9, "out of range"));
    CHECK(has(&p, 10, "'cachestores.impls.dpr-kv' must be an absolute path"));
    CHECK(has(&p, 10, "'cachestores.impls.x' must be a string"));
    CHECK(has(&p, 11, "unknown setting 'cachestores.typo'"));
    CHECK(has(&p, 13, "'log' must be a group"));
    CHECK(has(&p, 14, "'node.name' must be a host name"));
    CHECK_EQ_INT(p.n, 13);
    agent_problems_free(&p);
    unlink(path);
}

TEST(required_cluster_and_port_order)
{
    agent_config c;
    agent_problems p;

    write_conf("\ncachestores = { port_min = 9000; port_max = 8000; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK_EQ_INT(p.n, 2);
    CHECK(strstr(p.v[0].message, "'cluster' is required") != NULL);
    CHECK(has(&p, 2, "above"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(syntax_error_line)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"a\";\n\nnode = { name = ; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK_EQ_INT(p.n, 1);
    CHECK(has(&p, 3, "syntax error"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(control_limits)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"demo\";\n"
               "control = { max_connections = 10; max_connections_per_user = 4;\n"
               "  root_reserved_connections = 0; idle_timeout_ms = 1500;\n"
               "  max_input_bytes = 2097152; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(c.control_max_connections, 10);
    CHECK_EQ_INT(c.control_max_per_user, 4);
    CHECK_EQ_INT(c.control_root_reserved, 0);
    CHECK_EQ_INT(c.control_idle_timeout_ms, 1500);
    CHECK_EQ_INT(c.control_max_input_bytes, 2097152);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    write_conf("cluster = \"demo\";\n"                                 /* 1 */
               "control = {\n"                                         /* 2 */
               "  max_connections = 0;\n"                              /* 3 */
               "  max_connections_per_user = \"many\";\n"              /* 4 */
               "  idle_timeout_ms = 10;\n"                             /* 5 */
               "  max_input_bytes = 1048576;\n"                        /* 6 */
               "  max_input = 5;\n"                                    /* 7 */
               "};\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'control.max_connections' is out of range (1 to 65536)"));
    CHECK(has(&p, 4, "'control.max_connections_per_user' must be an integer"));
    CHECK(has(&p, 5, "'control.idle_timeout_ms' is out of range (100 to 3600000)"));
    CHECK(has(&p, 6, "'control.max_input_bytes' is out of range (2097152 to"));
    CHECK(has(&p, 7, "unknown setting 'control.max_input'"));
    CHECK_EQ_INT(p.n, 5);
    agent_problems_free(&p);
    unlink(path);

    /* root's reserved slots leave at least one for the others */
    write_conf("cluster = \"demo\";\n"
               "control = { max_connections = 8;\n"
               "  root_reserved_connections = 8; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'control.root_reserved_connections' (8) must be below "
                     "'control.max_connections' (8)"));
    CHECK_EQ_INT(p.n, 1);
    agent_problems_free(&p);
    unlink(path);
}

TEST(node_labels_and_capacity)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"demo\";\n"
               "node = { labels = [\"ssd\", \"zone=a\"]; max_instances = 12; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.nnode_labels == 2 && strcmp(c.node_labels[1], "zone=a") == 0);
    CHECK_EQ_INT(c.max_instances, 12);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    /* default: the port range's size */
    write_conf("cluster = \"demo\";\n"
               "cachestores = { port_min = 9000; port_max = 9009; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(c.max_instances, 10);
    CHECK_EQ_INT(c.nnode_labels, 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    write_conf("cluster = \"demo\";\n"                 /* 1 */
               "node = {\n"                              /* 2 */
               "  labels = [\"SSD\", \"-x\"];\n"        /* 3 */
               "  max_instances = 0;\n"                  /* 4 */
               "};\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'node.labels' entry 1 must be a label"));
    CHECK(has(&p, 3, "'node.labels' entry 2 must be a label"));
    CHECK(has(&p, 4, "'node.max_instances' is out of range (1 to 65535)"));
    agent_problems_free(&p);
    unlink(path);

    write_conf("cluster = \"demo\";\nnode = { labels = \"ssd\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "'node.labels' must be a list of strings"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(discovery_and_remote_control)
{
    agent_config c;
    agent_problems p;

    /* defaults: discovery on, no TCP control, no expect */
    write_conf("cluster = \"demo\";\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.discovery);
    CHECK(c.control_listen == NULL);
    CHECK(!c.control_remote_full);
    CHECK_EQ_INT(c.raft_expect, 0);
    CHECK(c.cs_address_derived && c.repl_listen_derived);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    /* no seed list: expect, or join found by DNS-SD */
    write_conf("cluster = \"demo\";\n"
               "control = { listen = \"0.0.0.0:7002\"; remote_access = \"full\"; };\n"
               "raft = { address = \"10.0.0.1:7400\"; expect = 3; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(c.raft_expect, 3);
    CHECK(strcmp(c.control_listen, "0.0.0.0:7002") == 0);
    CHECK(c.control_remote_full);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
    write_conf("cluster = \"demo\";\nraft = { address = \"10.0.0.1:7400\"; join = true; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.raft_join);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    /* every mistake with its line */
    write_conf("cluster = \"demo\";\n"
               "discovery = { enabled = \"yes\"; browse = true; };\n"
               "control = { listen = \"nowhere\";\n"
               "  remote_access = \"write\"; };\n"
               "raft = { address = \"10.0.0.1:7400\"; peers = [\"10.0.0.2:7400\"];\n"
               "  expect = 2; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "'discovery.enabled' must be true or false"));
    CHECK(has(&p, 2, "discovery.browse"));
    CHECK(has(&p, 3, "'control.listen'"));
    CHECK(has(&p, 4, "'control.remote_access' must be \"read-only\" or \"full\""));
    CHECK(has(&p, 6, "'raft.expect' is for a cluster without a seed list"));
    agent_problems_free(&p);
    unlink(path);
    write_conf("cluster = \"demo\";\ndiscovery = { enabled = false; };\n"
               "raft = { address = \"10.0.0.1:7400\";\n  join = true;\n  expect = 9; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 4, "'raft.join' needs 'raft.peers'"));
    CHECK(has(&p, 5, "'raft.expect'"));
    agent_problems_free(&p);
    unlink(path);
    write_conf("cluster = \"demo\";\ndiscovery = { enabled = false; };\n"
               "raft = { address = \"10.0.0.1:7400\";\n  expect = 3; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 4, "it needs 'discovery.enabled'"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(tls_section)
{
    agent_config c;
    agent_problems p;

    /* off by default; the files default under /etc/dpr/tls by node name */
    write_conf("cluster = \"demo\";\nnode = { name = \"n1\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(!c.tls_enabled);
    CHECK(strcmp(c.tls_cert, "/etc/dpr/tls/n1.crt") == 0);
    CHECK(strcmp(c.tls_key, "/etc/dpr/tls/n1.key") == 0);
    CHECK(strcmp(c.tls_ca, "/etc/dpr/tls/ca.crt") == 0);
    CHECK(c.tls_crl && strcmp(c.tls_crl, "/etc/dpr/tls/ca.crl") == 0);
    agent_config_free(&c);
    agent_problems_free(&p);

    write_conf("cluster = \"demo\";\n"
               "tls = { enabled = true; cert = \"/k/a.crt\"; key = \"/k/a.key\"; "
               "ca = \"/k/ca.crt\"; crl = \"\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.tls_enabled);
    CHECK(strcmp(c.tls_cert, "/k/a.crt") == 0);
    CHECK(strcmp(c.tls_key, "/k/a.key") == 0);
    CHECK(strcmp(c.tls_ca, "/k/ca.crt") == 0);
    CHECK(c.tls_crl == NULL);
    agent_config_free(&c);
    agent_problems_free(&p);

    write_conf("cluster = \"demo\";\n"                         /* 1 */
               "tls = { enabled = 1; cert = \"a.crt\";\n"      /* 2 */
               "  ca = 3; pem = \"/x\"; };\n");                 /* 3 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "'tls.enabled' must be true or false"));
    CHECK(has(&p, 2, "'tls.cert' must be an absolute path"));
    CHECK(has(&p, 3, "'tls.ca' must be a string"));
    CHECK(has(&p, 3, "tls.pem"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(finder_tls_listen)
{
    static const struct {
        const char *finder, *want;
    } defaults[] = {
        { "", "127.0.0.1:7001" },                            /* finder.listen's default */
        { "finder = { listen = \"0.0.0.0:7500\"; };\n", "0.0.0.0:7501" },
        { "finder = { listen = \"*:7500\"; };\n", "*:7501" },
        { "finder = { listen = \"[::1]:7500\"; };\n", "[::1]:7501" },
        { "finder = { listen = \"127.0.0.1:0\"; };\n", "127.0.0.1:0" },
        { "finder = { listen = \"127.0.0.1:7000\"; tls_listen = \"127.0.0.2:7443\"; };\n",
          "127.0.0.2:7443" },
    };
    agent_config c;
    agent_problems p;
    char text[512];

    /* none without TLS */
    write_conf("cluster = \"demo\";\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.finder_tls_listen == NULL);
    agent_config_free(&c);
    agent_problems_free(&p);
    /* with TLS: finder.listen's host and the next port, unless set */
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        snprintf(text, sizeof(text), "cluster = \"demo\";\n%stls = { enabled = true; };\n",
                 defaults[i].finder);
        write_conf(text);
        agent_problems_init(&p);
        CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
        CHECK(c.finder_tls_listen && strcmp(c.finder_tls_listen, defaults[i].want) == 0);
        if (c.finder_tls_listen && strcmp(c.finder_tls_listen, defaults[i].want) != 0)
            fprintf(stderr, "    %s: got %s\n", defaults[i].want, c.finder_tls_listen);
        agent_config_free(&c);
        agent_problems_free(&p);
    }
    write_conf("cluster = \"demo\";\n"                                          /* 1 */
               "finder = { tls_listen = \"127.0.0.1:7443\"; };\n");               /* 2 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "'finder.tls_listen' needs 'tls.enabled = true'"));
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"                                          /* 1 */
               "finder = { tls_listen = \"nope\"; };\n"                           /* 2 */
               "tls = { enabled = true; };\n");                                  /* 3 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "'finder.tls_listen'"));
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"                                          /* 1 */
               "finder = { listen = \"127.0.0.1:7000\";\n"                         /* 2 */
               "  tls_listen = \"127.0.0.1:7000\"; };\n"                          /* 3 */
               "tls = { enabled = true; };\n");                                  /* 4 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "needs a port of its own"));
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"                                          /* 1 */
               "finder = { listen = \"127.0.0.1:65535\"; };\n"                    /* 2 */
               "tls = { enabled = true; };\n");                                  /* 3 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 2, "set 'finder.tls_listen'"));
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"                                          /* 1 */
               "finder = { listen = \"127.0.0.1:7000\";\n"                         /* 2 */
               "  tls_listen = \"127.0.0.1:0\"; };\n"                             /* 3 */
               "raft = { address = \"127.0.0.1:7400\"; };\n"                      /* 4 */
               "tls = { enabled = true; };\n");                                  /* 5 */
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'finder.tls_listen' needs a port (not 0) in a cluster"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(address_of_an_interface)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"demo\";\nnode = { address = \"eth1\"; };\n"
               "replication = { socket = \"/run/x.sock\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(agent_config_resolve_address(&c, "eth1", "10.0.0.7"), 0);
    CHECK(strcmp(c.node_interface, "eth1") == 0);
    CHECK(strcmp(c.node_address, "10.0.0.7") == 0);
    /* listeners on every address; clients told node.address */
    CHECK(strcmp(c.cs_address, "0.0.0.0") == 0);
    CHECK(strcmp(agent_config_cs_host(&c), "10.0.0.7") == 0);
    CHECK(strcmp(c.repl_listen, "0.0.0.0:7401") == 0);
    /* it changes again: the interface stays */
    CHECK_EQ_INT(agent_config_resolve_address(&c, "eth1", "10.0.0.8"), 0);
    CHECK(strcmp(c.node_address, "10.0.0.8") == 0);
    CHECK(strcmp(agent_config_cs_host(&c), "10.0.0.8") == 0);
    CHECK(strcmp(c.repl_listen, "0.0.0.0:7401") == 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);

    /* settings given explicitly are kept */
    write_conf("cluster = \"demo\";\nnode = { address = \"eth1\"; };\n"
               "cachestores = { listen_address = \"0.0.0.0\"; };\n"
               "replication = { listen = \"0.0.0.0:7500\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(agent_config_resolve_address(&c, "eth1", "10.0.0.7"), 0);
    CHECK(strcmp(c.cs_address, "0.0.0.0") == 0);
    CHECK(strcmp(c.repl_listen, "0.0.0.0:7500") == 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
    write_conf("cluster = \"demo\";\nnode = { address = \"eth1\"; };\n"
               "cachestores = { listen_address = \"10.1.1.1\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(agent_config_resolve_address(&c, "eth1", "10.0.0.7"), 0);
    CHECK(strcmp(agent_config_cs_host(&c), "10.1.1.1") == 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    unlink(path);
}

TEST(metrics_section)
{
    agent_config c;
    agent_problems p;

    write_conf("cluster = \"demo\";\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.metrics_address == NULL); /* off by default */
    CHECK_EQ_INT(c.metrics_port_min, 0);
    CHECK_EQ_INT(c.metrics_port_max, 0);
    agent_config_free(&c);
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\nmetrics = { address = \"127.0.0.1:9464\"; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(c.metrics_address && strcmp(c.metrics_address, "127.0.0.1:9464") == 0);
    CHECK(c.metrics_workers); /* the default */
    agent_config_free(&c);
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\nmetrics = { address = \"127.0.0.1:0\"; workers = false; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK(!c.metrics_workers);
    agent_config_free(&c);
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\nmetrics = {\n  address = \"9464\";\n  path = \"/m\"; };\n"
               "control = { listen = 7; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'metrics.address'"));
    CHECK(has(&p, 4, "unknown setting 'metrics.path'"));
    CHECK(has(&p, 5, "'control.listen' must be a string"));
    agent_problems_free(&p);
    /* the instances' metrics ports */
    write_conf("cluster = \"demo\";\n"
               "cachestores = { metrics_port_min = 7800; metrics_port_max = 7899; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), 0);
    CHECK_EQ_INT(c.metrics_port_min, 7800);
    CHECK_EQ_INT(c.metrics_port_max, 7899);
    agent_config_free(&c);
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"
               "cachestores = {\n  metrics_port_min = 7800; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'cachestores.metrics_port_min' and 'metrics_port_max' go together"));
    agent_problems_free(&p);
    write_conf("cluster = \"demo\";\n"
               "cachestores = {\n  metrics_port_min = 7900;\n  metrics_port_max = 7800; };\n");
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load(path, &c, &p), -EINVAL);
    CHECK(has(&p, 3, "'cachestores.metrics_port_min' is above"));
    agent_problems_free(&p);
    unlink(path);
}

TEST(missing_file)
{
    agent_config c;
    agent_problems p;

    agent_problems_init(&p);
    CHECK_EQ_INT(agent_config_load("/nonexistent/agent.conf", &c, &p), -ENOENT);
    CHECK_EQ_INT(p.n, 1);
    CHECK(strstr(p.v[0].message, "No such file") != NULL);
    agent_problems_free(&p);
}

int main(void)
{
    RUN(defaults);
    RUN(everything_set);
    RUN(cs_address_follows_node);
    RUN(every_error_with_its_line);
    RUN(required_cluster_and_port_order);
    RUN(syntax_error_line);
    RUN(control_limits);
    RUN(node_labels_and_capacity);
    RUN(discovery_and_remote_control);
    RUN(address_of_an_interface);
    RUN(tls_section);
    RUN(finder_tls_listen);
    RUN(metrics_section);
    RUN(missing_file);
    if (path[0])
        unlink(path);
    return check_summary("test_agent_config");
}
