/* test_agent_proto.c - control API requests and replies: every error code
 * a request line can earn, args per op, id echo, line encoding. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "proto.h"

static const char *code_of(const json_t *reply)
{
    return json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
}

/* Parses text; expects failure with code; returns the message. */
static int fails_with(const char *text, const char *code, const char *needle)
{
    agent_request req;
    json_t *reply = NULL;
    const char *msg;
    int ok;

    if (agent_request_parse(text, strlen(text), &req, &reply) == 0) {
        agent_request_free(&req);
        fprintf(stderr, "    accepted: %s\n", text);
        return 0;
    }
    msg = json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
    ok = reply && strcmp(code_of(reply), code) == 0 && msg && (!needle || strstr(msg, needle)) &&
         json_integer_value(json_object_get(reply, "v")) == 1 &&
         json_is_false(json_object_get(reply, "ok"));
    if (!ok)
        fprintf(stderr, "    %s -> %s: %s\n", text, reply ? code_of(reply) : "?", msg ? msg : "");
    json_decref(reply);
    return ok;
}

TEST(bad_requests)
{
    CHECK(fails_with("", "bad_request", "not JSON"));
    CHECK(fails_with("{", "bad_request", "not JSON"));
    CHECK(fails_with("[1,2]", "bad_request", "object"));
    CHECK(fails_with("\"x\"", "bad_request", NULL));
    CHECK(fails_with("{\"op\":\"status\"}", "bad_request", "'v'"));
    CHECK(fails_with("{\"v\":\"1\",\"op\":\"status\"}", "bad_request", "integer"));
    CHECK(fails_with("{\"v\":2,\"op\":\"status\"}", "unsupported_version", "version 2"));
    CHECK(fails_with("{\"v\":1}", "bad_request", "'op'"));
    CHECK(fails_with("{\"v\":1,\"op\":\"reboot\"}", "bad_request", "unknown op 'reboot'"));
    CHECK(fails_with("{\"v\":1,\"op\":\"status\",\"x\":1}", "bad_request", "unknown field 'x'"));
    CHECK(fails_with("{\"v\":1,\"op\":\"status\",\"args\":[]}", "bad_request", "'args'"));
    CHECK(fails_with("{\"v\":1,\"op\":\"status\",\"args\":{\"nme\":\"kv\"}}", "bad_request",
                     "unknown argument 'nme'"));
    CHECK(fails_with("{\"v\":1,\"op\":\"status\",\"args\":{\"name\":3}}", "bad_request",
                     "args.name"));
    CHECK(fails_with("{\"v\":1,\"op\":\"delete\"}", "bad_request", "args.name"));
    CHECK(fails_with("{\"v\":1,\"op\":\"apply\",\"args\":{}}", "bad_request", "args.spec"));
    CHECK(fails_with("{\"v\":1,\"op\":\"plan\",\"args\":{\"spec\":{},\"dry_run\":true}}",
                     "bad_request", "dry_run"));
    CHECK(fails_with("{\"v\":1,\"op\":\"apply\",\"args\":{\"spec\":{},\"dry_run\":1}}",
                     "bad_request", "dry_run"));
    CHECK(fails_with("{\"v\":1,\"op\":\"events\",\"args\":{\"since\":1}}", "bad_request",
                     "since"));
    CHECK(fails_with("{\"v\":1,\"v\":1,\"op\":\"status\"}", "bad_request", "duplicate"));
    CHECK(fails_with("{\"v\":1,\"op\":\"status\"} x", "bad_request", "not JSON"));
}

TEST(id_is_echoed_on_errors)
{
    const char *text = "{\"v\":3,\"id\":{\"a\":[1]},\"op\":\"status\"}";
    agent_request req;
    json_t *reply = NULL;
    char *s;

    CHECK(agent_request_parse(text, strlen(text), &req, &reply) < 0);
    s = json_dumps(json_object_get(reply, "id"), JSON_COMPACT);
    CHECK(s && strcmp(s, "{\"a\":[1]}") == 0);
    free(s);
    json_decref(reply);
}

TEST(good_requests)
{
    const char *apply = "{\"v\":1,\"id\":7,\"op\":\"apply\",\"args\":{\"spec\":{\"name\":\"x\"},"
                        "\"dry_run\":true}}";
    const char *status = "{\"v\":1,\"op\":\"status\",\"args\":{\"name\":\"kv\"}}";
    const char *nodes = "{\"v\":1,\"op\":\"nodes\"}";
    agent_request req;
    json_t *reply = NULL;

    CHECK_EQ_INT(agent_request_parse(apply, strlen(apply), &req, &reply), 0);
    CHECK_EQ_INT(req.op, AGENT_OP_APPLY);
    CHECK(req.dry_run);
    CHECK(json_is_object(req.spec));
    CHECK_EQ_INT(json_integer_value(req.id), 7);
    agent_request_free(&req);
    CHECK_EQ_INT(agent_request_parse(status, strlen(status), &req, &reply), 0);
    CHECK_EQ_INT(req.op, AGENT_OP_STATUS);
    CHECK(req.name && strcmp(req.name, "kv") == 0);
    CHECK(req.id == NULL);
    agent_request_free(&req);
    CHECK_EQ_INT(agent_request_parse(nodes, strlen(nodes), &req, &reply), 0);
    CHECK_EQ_INT(req.op, AGENT_OP_NODES);
    agent_request_free(&req);
}

/* agent_json_line into a fresh NUL-terminated string; *len without the NUL. */
static char *line_of(const json_t *j, size_t *len)
{
    dpr_buf b = DPR_BUF_INIT;
    char *s;

    if (agent_json_line(j, &b) < 0 || dpr_buf_append(&b, "", 1) < 0) {
        dpr_buf_free(&b);
        return NULL;
    }
    s = dpr_buf_steal(&b, len);
    (*len)--;
    return s;
}

TEST(replies)
{
    json_t *id = json_integer(9), *r;
    agent_problems p;
    dpr_buf two = DPR_BUF_INIT;
    size_t len;
    char *line;

    r = agent_reply_ok(id, json_pack("{s:i}", "generation", 4));
    line = line_of(r, &len);
    CHECK(strcmp(line, "{\"v\":1,\"ok\":true,\"result\":{\"generation\":4},\"id\":9}\n") == 0);
    CHECK_EQ_INT(len, strlen(line));
    free(line);
    json_decref(r);

    agent_problems_init(&p);
    agent_problems_add(&p, "cachestores[0].shards", "must be >= %d", 1);
    r = agent_reply_error(NULL, AGENT_E_SPEC_INVALID, "1 problem", agent_problems_json(&p));
    line = line_of(r, &len);
    CHECK(strcmp(line, "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"spec_invalid\",\"message\":"
                       "\"1 problem\",\"details\":[{\"path\":\"cachestores[0].shards\","
                       "\"message\":\"must be >= 1\"}]}}\n") == 0);
    free(line);
    json_decref(r);
    agent_problems_free(&p);
    json_decref(id);

    /* non-ASCII is escaped: a line never holds a raw newline or odd bytes */
    r = json_pack("{s:s}", "m", "caf\xc3\xa9\n");
    line = line_of(r, &len);
    CHECK(strcmp(line, "{\"m\":\"caf\\u00E9\\n\"}\n") == 0);
    free(line);

    /* lines append to what the buffer holds */
    CHECK_EQ_INT(agent_json_line(r, &two), 0);
    CHECK_EQ_INT(agent_json_line(r, &two), 0);
    CHECK_EQ_INT(two.len, 2 * len);
    CHECK(memcmp(two.data, two.data + len, len) == 0 && two.data[len - 1] == '\n');
    dpr_buf_free(&two);
    json_decref(r);
}

int main(void)
{
    RUN(bad_requests);
    RUN(id_is_echoed_on_errors);
    RUN(good_requests);
    RUN(replies);
    return check_summary("test_agent_proto");
}
