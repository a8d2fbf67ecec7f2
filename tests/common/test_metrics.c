/* test_metrics.c - the Prometheus text writer (common/metrics.h) and the
 * metrics endpoint's request parsing and replies (common/http.h). */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/http.h"
#include "common/metrics.h"

static const char *text(dpr_buf *b)
{
    dpr_buf_append(b, "", 1);
    b->len--;
    return b->data;
}

TEST(counter_and_gauge)
{
    dpr_buf b = DPR_BUF_INIT;
    dpr_metrics_counter(&b, "dpr_x_ops_total", "operations\\done\nhere", 18446744073709551615u);
    dpr_metrics_gauge(&b, "dpr_x_ratio", "a ratio", 0.1);
    dpr_metrics_gauge(&b, "dpr_x_big", "big", 1e300);
    CHECK(strcmp(text(&b), "# HELP dpr_x_ops_total operations\\\\done\\nhere\n"
                           "# TYPE dpr_x_ops_total counter\n"
                           "dpr_x_ops_total 18446744073709551615\n"
                           "# HELP dpr_x_ratio a ratio\n"
                           "# TYPE dpr_x_ratio gauge\n"
                           "dpr_x_ratio 0.1\n"
                           "# HELP dpr_x_big big\n"
                           "# TYPE dpr_x_big gauge\n"
                           "dpr_x_big 1e+300\n") == 0);
    CHECK(!dpr_buf_failed(&b));
    dpr_buf_free(&b);
}

TEST(special_values_and_labels)
{
    dpr_buf b = DPR_BUF_INIT;
    dpr_metric_label l[] = {{"worker", "3"}, {"name", "a\"b\\c\nd"}};
    dpr_metrics_sample(&b, "m", l, 2, INFINITY);
    dpr_metrics_sample(&b, "m", l, 1, -INFINITY);
    dpr_metrics_sample(&b, "m", NULL, 0, NAN);
    dpr_metrics_sample(&b, "m", NULL, 0, 0.30000000000000004);
    dpr_metrics_sample_u64(&b, "m", l, 1, 7);
    CHECK(strcmp(text(&b), "m{worker=\"3\",name=\"a\\\"b\\\\c\\nd\"} +Inf\n"
                           "m{worker=\"3\"} -Inf\n"
                           "m NaN\n"
                           "m 0.30000000000000004\n"
                           "m{worker=\"3\"} 7\n") == 0);
    dpr_buf_free(&b);
}

TEST(histogram)
{
    dpr_histogram h;
    const double bad[] = {1, 1};
    dpr_buf b = DPR_BUF_INIT;
    dpr_metric_label l[] = {{"op", "save"}};

    CHECK_EQ_INT(dpr_histogram_init(&h, bad, 2), -EINVAL);
    CHECK_EQ_INT(dpr_histogram_init(&h, bad, DPR_HISTOGRAM_MAX_BUCKETS + 1), -EINVAL);
    const double bounds[] = {0.001, 0.01, 0.1};
    CHECK_EQ_INT(dpr_histogram_init(&h, bounds, 3), 0);
    dpr_histogram_observe(&h, 0.001); /* le is inclusive */
    dpr_histogram_observe(&h, 0.005);
    dpr_histogram_observe(&h, 0.5);
    dpr_histogram_observe(&h, 0.0);
    dpr_metrics_head(&b, "lat_seconds", DPR_METRIC_HISTOGRAM, "latency");
    dpr_metrics_histogram(&b, "lat_seconds", l, 1, &h);
    CHECK(strcmp(text(&b), "# HELP lat_seconds latency\n"
                           "# TYPE lat_seconds histogram\n"
                           "lat_seconds_bucket{op=\"save\",le=\"0.001\"} 2\n"
                           "lat_seconds_bucket{op=\"save\",le=\"0.01\"} 3\n"
                           "lat_seconds_bucket{op=\"save\",le=\"0.1\"} 3\n"
                           "lat_seconds_bucket{op=\"save\",le=\"+Inf\"} 4\n"
                           "lat_seconds_sum{op=\"save\"} 0.506\n"
                           "lat_seconds_count{op=\"save\"} 4\n") == 0);
    dpr_buf_reset(&b);
    CHECK_EQ_INT(dpr_histogram_init(&h, dpr_metrics_latency_bounds, dpr_metrics_latency_nbounds),
                 0);
    dpr_metrics_histogram_family(&b, "l", "x", &h);
    CHECK(strstr(text(&b), "l_bucket{le=\"+Inf\"} 0\nl_sum 0\nl_count 0\n") != NULL);
    dpr_buf_free(&b);
}

static int page(void *data, dpr_buf *body)
{
    int *calls = data;
    (*calls)++;
    dpr_metrics_counter(body, "c_total", "c", 1);
    return 0;
}

static int failing_page(void *data, dpr_buf *body)
{
    (void)data;
    (void)body;
    return -EIO;
}

static int respond(const char *req, dpr_http_metrics_fn fn, int *calls, dpr_buf *out)
{
    dpr_http_request r;
    dpr_buf_reset(out);
    int parsed = dpr_http_parse_request(req, strlen(req), &r);
    return dpr_http_respond(parsed, &r, fn, calls, out);
}

TEST(parse_request)
{
    dpr_http_request r;
    const char *get = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";

    for (size_t n = 0; n < strlen(get); n++)
        CHECK_EQ_INT(dpr_http_parse_request(get, n, &r), 0);
    CHECK_EQ_INT(dpr_http_parse_request(get, strlen(get), &r), 1);
    CHECK(strcmp(r.method, "GET") == 0 && strcmp(r.path, "/metrics") == 0);
    CHECK_EQ_INT(dpr_http_parse_request("GET / HTTP/1.0\r\n\r\n", 18, &r), 1);
    CHECK(strcmp(r.path, "/") == 0);
    CHECK_EQ_INT(dpr_http_parse_request("GARBAGE\r\n\r\n", 11, &r), -EBADMSG);
    CHECK_EQ_INT(dpr_http_parse_request("GET /metrics HTTP/2.0\r\n\r\n", 25, &r), -EBADMSG);
    CHECK_EQ_INT(dpr_http_parse_request("GET /\x01 HTTP/1.1\r\n\r\n", 20, &r), -EBADMSG);

    static char big[DPR_HTTP_MAX_REQUEST + 10];
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(big + 26, 'a', sizeof(big) - 26);
    CHECK_EQ_INT(dpr_http_parse_request(big, sizeof(big), &r), -EMSGSIZE);
    /* a long path is cut, not overflowed */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'p', 1000);
    memcpy(big + 1005, " HTTP/1.1\r\n\r\n", 13);
    CHECK_EQ_INT(dpr_http_parse_request(big, 1018, &r), 1);
    CHECK_EQ_U64(strlen(r.path), DPR_HTTP_PATH_MAX - 1);
}

TEST(replies)
{
    dpr_buf out = DPR_BUF_INIT;
    int calls = 0;

    CHECK_EQ_INT(respond("GET /metrics HTTP/1.1\r\n\r\n", page, &calls, &out), 200);
    CHECK_EQ_INT(calls, 1);
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                       "Content-Length: 50\r\n"
                       "Connection: close\r\n\r\n"
                       "# HELP c_total c\n# TYPE c_total counter\nc_total 1\n";
    CHECK(strcmp(text(&out), want) == 0);
    CHECK_EQ_INT(respond("HEAD /metrics HTTP/1.0\r\n\r\n", page, &calls, &out), 200);
    CHECK(strstr(text(&out), "Content-Length: 50\r\n") && strstr(text(&out), "c_total") == NULL);
    CHECK_EQ_INT(respond("GET /other HTTP/1.1\r\n\r\n", page, &calls, &out), 404);
    CHECK_EQ_INT(
        respond("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", page, &calls, &out), 405);
    CHECK(strstr(text(&out), "Allow: GET, HEAD\r\n") != NULL);
    CHECK_EQ_INT(respond("\x16\x03\x01 tls hello", page, &calls, &out), 400);
    CHECK(strstr(text(&out), "HTTP/1.1 400 Bad Request\r\n") == text(&out));
    CHECK_EQ_INT(respond("GET /metrics HTTP/1.1\r\n\r\n", failing_page, &calls, &out), 500);
    CHECK_EQ_INT(calls, 2); /* the page is written for GET and HEAD of /metrics only */
    CHECK_EQ_INT(dpr_http_respond(-EMSGSIZE, NULL, page, &calls, &out), 431);
    dpr_buf_free(&out);
}

static int json_page(void *data, dpr_buf *body)
{
    (*(int *)data) += 10;
    dpr_buf_append_str(body, "[]\n");
    return 0;
}

/* A second route (the agent's /sd): its own Content-Type, the first still
 * served, another path 404. */
TEST(routes)
{
    const dpr_http_route routes[] = { { "/metrics", DPR_METRICS_CONTENT_TYPE, page },
                                      { "/sd", "application/json", json_page } };
    dpr_buf out = DPR_BUF_INIT;
    dpr_http_request r;
    int calls = 0;
    const char *req = "GET /sd HTTP/1.1\r\n\r\n";

    CHECK_EQ_INT(dpr_http_parse_request(req, strlen(req), &r), 1);
    CHECK_EQ_INT(dpr_http_respond_routes(1, &r, routes, 2, &calls, &out), 200);
    CHECK_EQ_INT(calls, 10);
    CHECK(strstr(text(&out), "Content-Type: application/json\r\nContent-Length: 3\r\n") &&
          strstr(text(&out), "\r\n\r\n[]\n"));
    dpr_buf_reset(&out);
    req = "GET /metrics HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(dpr_http_parse_request(req, strlen(req), &r), 1);
    CHECK_EQ_INT(dpr_http_respond_routes(1, &r, routes, 2, &calls, &out), 200);
    CHECK_EQ_INT(calls, 11);
    dpr_buf_reset(&out);
    /* one route only: /sd is not served */
    req = "GET /sd HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(dpr_http_parse_request(req, strlen(req), &r), 1);
    CHECK_EQ_INT(dpr_http_respond_routes(1, &r, routes, 1, &calls, &out), 404);
    CHECK_EQ_INT(calls, 11);
    dpr_buf_free(&out);
}

int main(void)
{
    RUN(counter_and_gauge);
    RUN(special_values_and_labels);
    RUN(histogram);
    RUN(parse_request);
    RUN(replies);
    RUN(routes);
    return check_summary("test_metrics");
}
