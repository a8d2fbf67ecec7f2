/* test_agent_spec.c - the cluster spec: every rule, all problems at once,
 * defaults, round trip. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "spec.h"

static const char *const impls[] = { "dpr-kv", "other-kv" };
static const agent_spec_rules rules = { "demo", impls, 2, 0, 0, false };

/* Parses text; returns rc; problems in *p (caller frees). */
static int parse(const char *text, agent_spec *s, agent_problems *p)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    int rc;

    agent_problems_init(p);
    if (!j) {
        fprintf(stderr, "  bad test JSON: %s\n", e.text);
        return -999;
    }
    rc = agent_spec_parse(j, &rules, s, p);
    json_decref(j);
    return rc;
}

static int has_problem(const agent_problems *p, const char *path, const char *needle)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].where, path) == 0 && (!needle || strstr(p->v[i].message, needle)))
            return 1;
    for (size_t i = 0; i < p->n; i++)
        fprintf(stderr, "    problem %s: %s\n", p->v[i].where, p->v[i].message);
    return 0;
}

TEST(valid_with_defaults)
{
    agent_spec s;
    agent_problems p;
    int rc = parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                   "\"shards\":3},{\"name\":\"b-2\",\"impl\":\"other-kv\",\"version\":\"2.0+x_y-z\","
                   "\"shards\":1024,\"checkpoint_interval_ms\":10,\"max_clients\":100000}]}",
                   &s, &p);

    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(p.n, 0);
    if (rc == 0) {
        CHECK(strcmp(s.name, "demo") == 0);
        CHECK_EQ_INT(s.n, 2);
        CHECK(strcmp(s.d[0].impl, "dpr-kv") == 0);
        CHECK_EQ_INT(s.d[0].shards, 3);
        CHECK_EQ_INT(s.d[0].checkpoint_interval_ms, 100);
        CHECK_EQ_INT(s.d[0].max_clients, 10000);
        CHECK(strcmp(s.d[1].name, "b-2") == 0);
        CHECK_EQ_INT(s.d[1].shards, 1024);
        CHECK_EQ_INT(s.d[1].checkpoint_interval_ms, 10);
        CHECK_EQ_INT(s.d[1].max_clients, 100000);
        CHECK_EQ_INT(agent_spec_find(&s, "b-2"), 1);
        CHECK_EQ_INT(agent_spec_find(&s, "nope"), -1);
        agent_spec_free(&s);
    }
    agent_problems_free(&p);
}

TEST(configured_defaults)
{
    agent_spec_rules r = { "demo", impls, 2, 250, 77, false };
    json_t *j = json_loads("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\","
                           "\"version\":\"1\",\"shards\":1}]}", 0, NULL);
    agent_problems p;
    agent_spec s;

    agent_problems_init(&p);
    CHECK_EQ_INT(agent_spec_parse(j, &r, &s, &p), 0);
    CHECK_EQ_INT(s.d[0].checkpoint_interval_ms, 250);
    CHECK_EQ_INT(s.d[0].max_clients, 77);
    agent_spec_free(&s);
    agent_problems_free(&p);
    json_decref(j);
}

TEST(empty_list_is_valid)
{
    agent_spec s;
    agent_problems p;

    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[]}", &s, &p), 0);
    CHECK_EQ_INT(s.n, 0);
    agent_spec_free(&s);
    agent_problems_free(&p);
}

TEST(every_problem_reported)
{
    agent_spec s;
    agent_problems p;
    int rc = parse("{\"name\":\"other\",\"extra\":1,\"cachestores\":["
                   "{\"name\":\"Bad_Name\",\"impl\":\"nope\",\"version\":\"\",\"shards\":0,"
                   "\"checkpoint_interval_ms\":5,\"max_clients\":100001,\"shard\":3},"
                   "{\"name\":\"ok\",\"version\":\"1\",\"shards\":-2},"
                   "{\"name\":\"ok\",\"version\":\"1 2\",\"shards\":1.5},"
                   "{\"version\":\"1\",\"shards\":1025,\"checkpoint_interval_ms\":60001},"
                   "7,"
                   "{\"name\":\"x\",\"version\":1,\"shards\":\"3\",\"impl\":3}]}",
                   &s, &p);

    CHECK_EQ_INT(rc, -EINVAL);
    CHECK(has_problem(&p, "name", "'demo'"));
    CHECK(has_problem(&p, "extra", "unknown field"));
    CHECK(has_problem(&p, "cachestores[0].name", "must match"));
    CHECK(has_problem(&p, "cachestores[0].impl", "unknown implementation 'nope'"));
    CHECK(has_problem(&p, "cachestores[0].impl", "dpr-kv, other-kv"));
    CHECK(has_problem(&p, "cachestores[0].version", NULL));
    CHECK(has_problem(&p, "cachestores[0].shards", "must be >= 1"));
    CHECK(has_problem(&p, "cachestores[0].checkpoint_interval_ms", ">= 10"));
    CHECK(has_problem(&p, "cachestores[0].max_clients", "<= 100000"));
    CHECK(has_problem(&p, "cachestores[0].shard", "unknown field"));
    CHECK(has_problem(&p, "cachestores[1].shards", "must be >= 1"));
    CHECK(has_problem(&p, "cachestores[2].name", "duplicate name 'ok'"));
    CHECK(has_problem(&p, "cachestores[2].version", NULL));
    CHECK(has_problem(&p, "cachestores[2].shards", "must be an integer"));
    CHECK(has_problem(&p, "cachestores[3].name", "required"));
    CHECK(has_problem(&p, "cachestores[3].shards", "<= 1024"));
    CHECK(has_problem(&p, "cachestores[3].checkpoint_interval_ms", "<= 60000"));
    CHECK(has_problem(&p, "cachestores[4]", "must be an object"));
    CHECK(has_problem(&p, "cachestores[5].version", "must be a string"));
    CHECK(has_problem(&p, "cachestores[5].shards", "must be an integer"));
    CHECK(has_problem(&p, "cachestores[5].impl", "must be a string"));
    CHECK_EQ_INT(p.n, 20);
    agent_problems_free(&p);
}

TEST(names)
{
    CHECK(agent_name_valid("kv", 32));
    CHECK(agent_name_valid("a-b-c1", 32));
    CHECK(agent_name_valid("a0", 32));
    CHECK(agent_name_valid("abcdefghijabcdefghijabcdefghijab", 32));
    CHECK(!agent_name_valid("abcdefghijabcdefghijabcdefghijabc", 32));
    CHECK(!agent_name_valid("", 32));
    CHECK(!agent_name_valid("0kv", 32));
    CHECK(!agent_name_valid("kv-", 32));
    CHECK(!agent_name_valid("-kv", 32));
    CHECK(!agent_name_valid("k--v", 32));
    CHECK(!agent_name_valid("Kv", 32));
    CHECK(!agent_name_valid("k_v", 32));
    CHECK(!agent_name_valid("k.v", 32));
    CHECK(!agent_name_valid("k v", 32));
}

TEST(missing_top_level)
{
    agent_spec s;
    agent_problems p;

    CHECK_EQ_INT(parse("{}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "name", "required"));
    CHECK(has_problem(&p, "cachestores", "required"));
    agent_problems_free(&p);
    CHECK_EQ_INT(parse("[1]", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "", "must be an object"));
    agent_problems_free(&p);
    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":{}}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores", "must be a list"));
    agent_problems_free(&p);
    CHECK_EQ_INT(parse("{\"name\":7,\"cachestores\":[]}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "name", "must be a string"));
    agent_problems_free(&p);
}

TEST(boolean_is_not_integer)
{
    agent_spec s;
    agent_problems p;

    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                       "\"shards\":true}]}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].shards", "must be an integer"));
    agent_problems_free(&p);
}

TEST(round_trip)
{
    agent_spec s, s2, s3;
    agent_problems p;
    json_t *j;

    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                       "\"shards\":3,\"maxmemory\":\"2gb\"}]}", &s, &p), 0);
    agent_problems_free(&p);
    j = agent_spec_to_json(&s);
    CHECK(j != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j,
                 "cachestores"), 0), "checkpoint_interval_ms")), 100);
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_spec_parse(j, &rules, &s2, &p), 0);
    CHECK_EQ_INT(s2.n, 1);
    CHECK(memcmp(&s.d[0], &s2.d[0], sizeof(s.d[0])) == 0);
    CHECK_EQ_INT(agent_spec_copy(&s2, &s3), 0);
    CHECK(strcmp(s3.name, "demo") == 0 && s3.n == 1 && s3.d[0].shards == 3);
    agent_spec_free(&s3);
    agent_spec_free(&s2);
    agent_spec_free(&s);
    agent_problems_free(&p);
    json_decref(j);
}

TEST(long_strings_are_shortened)
{
    char text[5000];
    char big[1000];
    agent_spec s;
    agent_problems p;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(text, sizeof(text), "{\"name\":\"demo\",\"cachestores\":[{\"name\":\"%s\","
             "\"version\":\"%s\",\"impl\":\"%s\",\"shards\":1}]}", big, big, big);
    CHECK_EQ_INT(parse(text, &s, &p), -EINVAL);
    CHECK_EQ_INT(p.n, 3);
    for (size_t i = 0; i < p.n; i++)
        CHECK(strlen(p.v[i].message) < 300);
    agent_problems_free(&p);
}

/* cachestores[0] with field set to the JSON value v. */
static int parse_field(const char *field, const char *v, agent_spec *s, agent_problems *p)
{
    char text[256];

    snprintf(text, sizeof(text), "{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\","
             "\"version\":\"1\",\"shards\":1,\"%s\":%s}]}", field, v);
    return parse(text, s, p);
}

static int parse_maxmemory(const char *v, agent_spec *s, agent_problems *p)
{
    return parse_field("maxmemory", v, s, p);
}

/* cachestores[0].field = v is refused with one problem, which has needle. */
static void expect_refused(const char *field, const char *v, const char *needle)
{
    char path[64];
    agent_spec s;
    agent_problems p;

    snprintf(path, sizeof(path), "cachestores[0].%s", field);
    CHECK_EQ_INT(parse_field(field, v, &s, &p), -EINVAL);
    if (!has_problem(&p, path, needle))
        fprintf(stderr, "    %s %s: wanted '%s'\n", field, v, needle);
    CHECK(has_problem(&p, path, needle));
    CHECK_EQ_INT(p.n, 1);
    agent_problems_free(&p);
}

TEST(maxmemory)
{
    static const struct {
        const char *json;
        unsigned long long bytes;
    } ok[] = {
        { "0", 0 },
        { "1048576", 1048576 },
        { "\"512mb\"", 512ull << 20 },
        { "\"1GB\"", 1ull << 30 },
        { "\"2g\"", 2000000000ull },
        { "\"1024kb\"", 1ull << 20 },
        { "\"16384gb\"", 1ull << 44 },
        { "\"0\"", 0 },
    };
    static const struct {
        const char *json, *needle;
    } bad[] = {
        { "1000", "at least 1048576 bytes (1mb) (got 1000)" },
        { "\"1000k\"", "at least 1048576 bytes (1mb) (got 1000000)" },
        { "-1", "must be 0 (no limit) or a size" },
        { "\"1.5gb\"", "not a memory size: '1.5gb'" },
        { "\"1tb\"", "not a memory size: '1tb'" },
        { "\" 1mb\"", "not a memory size" },
        { "\"mb\"", "not a memory size" },
        { "\"\"", "not a memory size" },
        { "\"16385gb\"", "at most 17592186044416 bytes (16384gb)" },
        { "\"99999999999999999999\"", "too large" },
        { "true", "got a boolean" },
        { "1.5", "got a number with a fraction" },
        { "null", "got null" },
    };
    agent_spec s;
    agent_problems p;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = parse_maxmemory(ok[i].json, &s, &p);
        CHECK_EQ_INT(rc, 0);
        if (rc == 0) {
            CHECK(s.d[0].maxmemory == ok[i].bytes);
            agent_spec_free(&s);
        } else {
            fprintf(stderr, "    maxmemory %s\n", ok[i].json);
        }
        agent_problems_free(&p);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("maxmemory", bad[i].json, bad[i].needle);
    /* absent: no limit; recorded (and shown) in bytes */
    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                       "\"shards\":1}]}", &s, &p), 0);
    CHECK(s.d[0].maxmemory == 0);
    agent_spec_free(&s);
    agent_problems_free(&p);
    CHECK_EQ_INT(parse_maxmemory("\"64mb\"", &s, &p), 0);
    {
        json_t *j = agent_deploy_to_json(&s.d[0]);
        CHECK(json_integer_value(json_object_get(j, "maxmemory")) == 64 << 20);
        json_decref(j);
    }
    agent_spec_free(&s);
    agent_problems_free(&p);
}

/* checkpoint_mode: "log" or "full", dpr-kv's default when absent (not
 * written back then). */
TEST(checkpoint_mode)
{
    static const struct {
        const char *json, *needle;
    } bad[] = {
        { "\"fast\"", "must be \"log\" (change logs between full images, dpr-kv's default) "
                      "or \"full\" (a full image every checkpoint) (got 'fast')" },
        { "\"\"", "(got '')" },
        { "\"LOG\"", "(got 'LOG')" },
        { "1", "must be a string (got an integer)" },
        { "null", "must be a string (got null)" },
    };
    const char *modes[] = { "log", "full" };
    char v[16];
    agent_spec s;
    agent_problems p;
    json_t *j;

    for (size_t i = 0; i < 2; i++) {
        snprintf(v, sizeof(v), "\"%s\"", modes[i]);
        CHECK_EQ_INT(parse_field("checkpoint_mode", v, &s, &p), 0);
        CHECK(strcmp(s.d[0].checkpoint_mode, modes[i]) == 0);
        j = agent_deploy_to_json(&s.d[0]);
        CHECK(j && strcmp(json_string_value(json_object_get(j, "checkpoint_mode")), modes[i]) == 0);
        json_decref(j);
        agent_spec_free(&s);
        agent_problems_free(&p);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused("checkpoint_mode", bad[i].json, bad[i].needle);
    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                       "\"shards\":1}]}", &s, &p), 0);
    CHECK(s.d[0].checkpoint_mode[0] == '\0');
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(j && !json_object_get(j, "checkpoint_mode"));
    json_decref(j);
    agent_spec_free(&s);
    agent_problems_free(&p);
}

/* tls: {"clients": "required" | "optional" | "off"} ({}: required), written
 * back as given; refused with every problem at its path, and refused whole
 * when the agents do not speak TLS (rules.no_tls). */
TEST(tls)
{
    static const struct {
        const char *json, *path, *needle;
    } bad[] = {
        { "\"yes\"", "cachestores[0].tls", "must be an object such as {\"clients\": "
                                            "\"required\"} (got a string)" },
        { "{\"clients\":\"yes\"}", "cachestores[0].tls.clients",
          "must be \"required\" (every client shows a certificate of the cluster's CA), "
          "\"optional\" (checked when shown) or \"off\" (none asked for) (got 'yes')" },
        { "{\"clients\":\"\"}", "cachestores[0].tls.clients", "(got '')" },
        { "{\"clients\":true}", "cachestores[0].tls.clients", "must be a string (got a boolean)" },
        { "{\"clients\":null}", "cachestores[0].tls.clients", "must be a string (got null)" },
        { "{\"client\":\"off\"}", "cachestores[0].tls.client", "unknown field" },
    };
    static const struct {
        const char *json, *clients;
    } ok[] = {
        { "{\"clients\":\"required\"}", "required" }, { "{\"clients\":\"optional\"}", "optional" },
        { "{\"clients\":\"off\"}", "off" },           { "{}", "required" },
    };
    agent_spec_rules plain = rules;
    agent_spec s;
    agent_problems p;
    json_t *j;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_EQ_INT(parse_field("tls", ok[i].json, &s, &p), 0);
        CHECK(strcmp(s.d[0].tls_clients, ok[i].clients) == 0);
        j = agent_deploy_to_json(&s.d[0]);
        CHECK(j && strcmp(json_string_value(json_object_get(json_object_get(j, "tls"),
                                                            "clients")), ok[i].clients) == 0);
        json_decref(j);
        agent_spec_free(&s);
        agent_problems_free(&p);
    }
    CHECK(strcmp(agent_tls_clients_auth("required"), "yes") == 0);
    CHECK(strcmp(agent_tls_clients_auth(""), "yes") == 0);
    CHECK(strcmp(agent_tls_clients_auth("optional"), "optional") == 0);
    CHECK(strcmp(agent_tls_clients_auth("off"), "no") == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(parse_field("tls", bad[i].json, &s, &p), -EINVAL);
        CHECK(has_problem(&p, bad[i].path, bad[i].needle));
        CHECK_EQ_INT(p.n, 1);
        agent_problems_free(&p);
    }
    /* absent: not written back */
    CHECK_EQ_INT(parse("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                       "\"shards\":1}]}", &s, &p), 0);
    CHECK(s.d[0].tls_clients[0] == '\0');
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(j && !json_object_get(j, "tls"));
    json_decref(j);
    agent_spec_free(&s);
    agent_problems_free(&p);
    /* agents without TLS: a valid tls is refused (a bad one for its own fault) */
    plain.no_tls = true;
    j = json_loads("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                   "\"shards\":1,\"tls\":{\"clients\":\"off\"}}]}", 0, NULL);
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_spec_parse(j, &plain, &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].tls", "the agents do not speak TLS: set tls.enabled"));
    CHECK_EQ_INT(p.n, 1);
    agent_problems_free(&p);
    json_decref(j);
    j = json_loads("{\"name\":\"demo\",\"cachestores\":[{\"name\":\"kv\",\"version\":\"1\","
                   "\"shards\":1}]}", 0, NULL);
    agent_problems_init(&p);
    CHECK_EQ_INT(agent_spec_parse(j, &plain, &s, &p), 0);
    agent_spec_free(&s);
    agent_problems_free(&p);
    json_decref(j);
}

TEST(memory_parse)
{
    uint64_t v = 7;

    CHECK_EQ_INT(agent_memory_parse("123", &v), 0);
    CHECK(v == 123);
    CHECK_EQ_INT(agent_memory_parse("5b", &v), 0);
    CHECK(v == 5);
    CHECK_EQ_INT(agent_memory_parse("3K", &v), 0);
    CHECK(v == 3000);
    CHECK_EQ_INT(agent_memory_parse("3Kb", &v), 0);
    CHECK(v == 3072);
    CHECK_EQ_INT(agent_memory_parse("7m", &v), 0);
    CHECK(v == 7000000);
    CHECK_EQ_INT(agent_memory_parse("7mB", &v), 0);
    CHECK(v == 7u << 20);
    CHECK_EQ_INT(agent_memory_parse("18446744073709551615", &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK_EQ_INT(agent_memory_parse("18446744073709551616", &v), -ERANGE);
    CHECK_EQ_INT(agent_memory_parse("17179869184gb", &v), -ERANGE);
    v = 7;
    CHECK_EQ_INT(agent_memory_parse("", &v), -EINVAL);
    CHECK_EQ_INT(agent_memory_parse("+1", &v), -EINVAL);
    CHECK_EQ_INT(agent_memory_parse("1 mb", &v), -EINVAL);
    CHECK_EQ_INT(agent_memory_parse("1mbb", &v), -EINVAL);
    CHECK_EQ_INT(agent_memory_parse("0x10", &v), -EINVAL);
    CHECK(v == 7); /* untouched on error */
}

TEST(node_selector)
{
    agent_spec s;
    agent_problems p;
    json_t *j;

    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"kv\", "
                       "\"version\": \"1\", \"shards\": 2, \"node_selector\": "
                       "{\"nodes\": [\"n1\", \"Node_2.x\"], \"labels\": [\"zone=a\"]}}]}",
                       &s, &p), 0);
    CHECK(s.d[0].selector.nnodes == 2 && strcmp(s.d[0].selector.nodes[1], "Node_2.x") == 0);
    CHECK(s.d[0].selector.nlabels == 1 && strcmp(s.d[0].selector.labels[0], "zone=a") == 0);
    /* round trip: written back only when set */
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(json_array_size(json_object_get(json_object_get(j, "node_selector"), "nodes")) == 2);
    json_decref(j);
    s.d[0].selector.nnodes = s.d[0].selector.nlabels = 0;
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(json_object_get(j, "node_selector") == NULL);
    json_decref(j);
    agent_spec_free(&s);
    agent_problems_free(&p);

    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": ["
                       "{\"name\": \"a\", \"version\": \"1\", \"shards\": 1, "
                       "\"node_selector\": [\"n1\"]},"
                       "{\"name\": \"b\", \"version\": \"1\", \"shards\": 1, "
                       "\"node_selector\": {\"nodes\": [\"n 1\", 3, \"n2\", \"n2\"], "
                       "\"labels\": [\"SSD\"], \"zone\": \"a\"}},"
                       "{\"name\": \"c\", \"version\": \"1\", \"shards\": 1, "
                       "\"node_selector\": {\"labels\": \"ssd\"}}]}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].node_selector", "must be an object"));
    CHECK(has_problem(&p, "cachestores[1].node_selector.nodes[0]", "not a node name"));
    CHECK(has_problem(&p, "cachestores[1].node_selector.nodes[1]", "not a node name"));
    CHECK(has_problem(&p, "cachestores[1].node_selector.nodes[3]", "listed twice"));
    CHECK(has_problem(&p, "cachestores[1].node_selector.labels[0]", "not a label"));
    CHECK(has_problem(&p, "cachestores[1].node_selector.zone", "unknown field"));
    CHECK(has_problem(&p, "cachestores[2].node_selector.labels", "must be a list"));
    agent_problems_free(&p);
    CHECK(agent_label_valid("zone=a") && agent_label_valid("a") && !agent_label_valid("a-") &&
          !agent_label_valid("") && !agent_label_valid("=a"));
}

TEST(replicas)
{
    agent_spec s;
    agent_problems p;
    json_t *j;

    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                       "\"version\": \"1\", \"shards\": 1}, {\"name\": \"b\", "
                       "\"version\": \"1\", \"shards\": 1, \"replicas\": 2}]}", &s, &p), 0);
    CHECK_EQ_INT(s.d[0].replicas, AGENT_REPLICAS_AUTO);
    CHECK_EQ_INT(s.d[1].replicas, 2);
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(json_object_get(j, "replicas") == NULL); /* (not given: not written) */
    json_decref(j);
    j = agent_deploy_to_json(&s.d[1]);
    CHECK(json_integer_value(json_object_get(j, "replicas")) == 2);
    json_decref(j);
    agent_spec_free(&s);
    agent_problems_free(&p);
    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                       "\"version\": \"1\", \"shards\": 1, \"replicas\": 3}, {\"name\": "
                       "\"b\", \"version\": \"1\", \"shards\": 1, \"replicas\": \"1\"}]}",
                       &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].replicas", "must be <= 2"));
    CHECK(has_problem(&p, "cachestores[1].replicas", "must be an integer"));
    agent_problems_free(&p);
}

TEST(rollout)
{
    agent_spec s;
    agent_problems p;
    json_t *j;

    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                       "\"version\": \"1\", \"shards\": 1}, {\"name\": \"b\", "
                       "\"version\": \"1\", \"shards\": 4, \"rollout\": "
                       "{\"min_ready_seconds\": 5, \"partition\": 2, \"paused\": true}}]}",
                       &s, &p), 0);
    /* defaults: one at a time, a deadline of 120 s, not written back */
    CHECK(!s.d[0].rollout.given && s.d[0].rollout.max_unavailable == 1 &&
          s.d[0].rollout.partition == 0 && s.d[0].rollout.progress_deadline_seconds == 120 &&
          !s.d[0].rollout.paused);
    CHECK(s.d[1].rollout.given && s.d[1].rollout.min_ready_seconds == 5 &&
          s.d[1].rollout.partition == 2 && s.d[1].rollout.paused &&
          s.d[1].rollout.max_unavailable == 1);
    j = agent_deploy_to_json(&s.d[0]);
    CHECK(json_object_get(j, "rollout") == NULL);
    json_decref(j);
    j = agent_deploy_to_json(&s.d[1]);
    CHECK(json_is_true(json_object_get(json_object_get(j, "rollout"), "paused")));
    CHECK(json_integer_value(json_object_get(json_object_get(j, "rollout"), "partition")) == 2);
    CHECK(json_object_get(json_object_get(j, "rollout"), "resumed") == NULL); /* (never) */
    json_decref(j);
    agent_spec_free(&s);
    agent_problems_free(&p);
    /* resumed: a count, written back once above 0; an apply without it
     * keeps the recorded one, never lowers it */
    {
        agent_spec was;
        CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"b\", "
                           "\"version\": \"1\", \"shards\": 1, \"rollout\": "
                           "{\"resumed\": 4}}]}", &was, &p), 0);
        agent_problems_free(&p);
        CHECK(was.d[0].rollout.resumed == 4);
        j = agent_deploy_to_json(&was.d[0]);
        CHECK(json_integer_value(json_object_get(json_object_get(j, "rollout"), "resumed")) == 4);
        json_decref(j);
        CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                           "\"version\": \"1\", \"shards\": 1}, {\"name\": \"b\", "
                           "\"version\": \"2\", \"shards\": 1}]}", &s, &p), 0);
        agent_problems_free(&p);
        agent_spec_keep_resumed(&s, &was);
        CHECK(s.d[0].rollout.resumed == 0 && !s.d[0].rollout.given);
        CHECK(s.d[1].rollout.resumed == 4 && s.d[1].rollout.given);
        s.d[1].rollout.resumed = 9;
        agent_spec_keep_resumed(&s, &was);
        CHECK(s.d[1].rollout.resumed == 9);
        agent_spec_keep_resumed(&s, NULL);
        agent_spec_free(&s);
        agent_spec_free(&was);
    }
    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                       "\"version\": \"1\", \"shards\": 1, \"rollout\": "
                       "{\"max_unavailable\": 0, \"partition\": -1, \"paused\": 1, "
                       "\"surge\": 2, \"progress_deadline_seconds\": 0}}, {\"name\": "
                       "\"b\", \"version\": \"1\", \"shards\": 1, \"rollout\": []}]}",
                       &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].rollout.max_unavailable", "must be >= 1"));
    CHECK(has_problem(&p, "cachestores[0].rollout.partition", "must be >= 0"));
    CHECK(has_problem(&p, "cachestores[0].rollout.paused", "true or false"));
    CHECK(has_problem(&p, "cachestores[0].rollout.surge", NULL));
    CHECK(has_problem(&p, "cachestores[0].rollout.progress_deadline_seconds", ">= 1"));
    CHECK(has_problem(&p, "cachestores[1].rollout", "must be an object"));
    agent_problems_free(&p);
    CHECK_EQ_INT(parse("{\"name\": \"demo\", \"cachestores\": [{\"name\": \"a\", "
                       "\"version\": \"1\", \"shards\": 1, \"rollout\": "
                       "{\"resumed\": -1}}]}", &s, &p), -EINVAL);
    CHECK(has_problem(&p, "cachestores[0].rollout.resumed", "must be >= 0"));
    agent_problems_free(&p);
}

TEST(memory_max_formula)
{
    /* no maxmemory: no limit */
    CHECK(agent_memory_max_of(0, 10000) == UINT64_MAX);
    /* 2 x (fork) + 1/2 (allocator) + 64 MiB + 32 KiB a client */
    CHECK(agent_memory_max_of(1ull << 30, 0) == (5ull << 29) + (64ull << 20));
    CHECK(agent_memory_max_of(1ull << 30, 10000) ==
          (5ull << 29) + (64ull << 20) + 10000ull * 32768);
    CHECK(agent_memory_max_of(AGENT_MAXMEMORY_MAX, AGENT_MAX_CLIENTS_MAX) >
          2 * AGENT_MAXMEMORY_MAX); /* no overflow at the limits */
    /* always above twice the data (a snapshot must never hit it) */
    for (uint64_t m = AGENT_MAXMEMORY_MIN; m <= AGENT_MAXMEMORY_MAX; m *= 3)
        CHECK(agent_memory_max_of(m, 1) > 2 * m + m / 4);
}

int main(void)
{
    RUN(valid_with_defaults);
    RUN(configured_defaults);
    RUN(empty_list_is_valid);
    RUN(every_problem_reported);
    RUN(names);
    RUN(missing_top_level);
    RUN(boolean_is_not_integer);
    RUN(round_trip);
    RUN(long_strings_are_shortened);
    RUN(maxmemory);
    RUN(checkpoint_mode);
    RUN(tls);
    RUN(memory_parse);
    RUN(memory_max_formula);
    RUN(node_selector);
    RUN(replicas);
    RUN(rollout);
    return check_summary("test_agent_spec");
}
