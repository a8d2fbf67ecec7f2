/* test_store.c - the file store: round trip of every domain, corruption,
 * the formats from before domains, crash leftovers, locking, directories. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "states_equal.h"
#include "dpr/store.h"

static char base[256];

static void make_base(void)
{
    snprintf(base, sizeof(base), "/tmp/dpr-test-store-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void rm_rf(const char *path)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "  cleanup of %s failed\n", path);
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static int read_file(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (!f)
        return -errno;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    *len = fread(*data, 1, (size_t)n, f);
    fclose(f);
    return 0;
}

static int write_file(const char *path, const unsigned char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (!f)
        return -errno;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -EIO;
    }
    return fclose(f) == 0 ? 0 : -EIO;
}

static dpr_finder_worker_state sample_workers[] = {
    { 1, 3, 5, "s3cr3t", false },
    { 7, 0, 0, "", false },
    { 42, 9, 9, "abc", false },
    { UINT64_MAX >> 1, 1, 2, "", false },
};

static dpr_dep sample_cut1[] = { { 1, 2 }, { 42, 3 } };

static dpr_finder_prefix sample_prefixes[] = {
    { 1, 2, sample_cut1 },
    { 2, 0, NULL },
};

/* The content of the sample's first domain, "kv". */
static dpr_finder_state sample(void)
{
    dpr_finder_state st;

    memset(&st, 0, sizeof(st));
    st.world_line = 3;
    st.generation = 17;
    st.nworkers = sizeof(sample_workers) / sizeof(sample_workers[0]);
    st.workers = sample_workers;
    st.nprefixes = sizeof(sample_prefixes) / sizeof(sample_prefixes[0]);
    st.prefixes = sample_prefixes;
    return st;
}

static dpr_finder_worker_state sample_sessions_workers[] = { { 5, 2, 2, "", false } };
static dpr_domain_state sample_domains[2];

/* Two domains: "kv" (sample()) and "sessions" (world-line 1, one worker
 * without a token). Points into static storage. */
static dpr_domains_state sample_all(void)
{
    dpr_domains_state st = { .generation = 40, .n = 2, .domains = sample_domains };

    memset(sample_domains, 0, sizeof(sample_domains));
    strcpy(sample_domains[0].name, "kv");
    sample_domains[0].state = sample();
    strcpy(sample_domains[1].name, "sessions");
    sample_domains[1].state.world_line = 1;
    sample_domains[1].state.generation = 23;
    sample_domains[1].state.nworkers = 1;
    sample_domains[1].state.workers = sample_sessions_workers;
    return st;
}

/* One domain with content c (static storage). */
static dpr_domain_state one_domain[1];
static dpr_domains_state one(const char *name, dpr_finder_state c)
{
    dpr_domains_state st = { .generation = c.generation, .n = 1, .domains = one_domain };

    memset(one_domain, 0, sizeof(one_domain));
    snprintf(one_domain[0].name, sizeof(one_domain[0].name), "%s", name);
    one_domain[0].state = c;
    return st;
}

/* Offsets in the sample's file (format 3: a header, then per domain its
 * name and its content; a worker takes 25 bytes and its token's). */
#define OFF_GEN 9
#define OFF_NDOMAINS 17
#define OFF_NAME0 25                  /* "kv": length byte, 2 bytes */
#define OFF_WL (OFF_NAME0 + 1 + 2)    /* kv's content */
#define OFF_NWORKERS (OFF_WL + 16)
#define OFF_W0 (OFF_WL + 24)
#define OFF_W1 (OFF_W0 + 25 + 6)
#define OFF_W2 (OFF_W1 + 25)
#define OFF_W3 (OFF_W2 + 25 + 3)
#define OFF_NPREFIXES (OFF_W3 + 25)
#define OFF_PREFIX0 (OFF_NPREFIXES + 8)
#define OFF_PREFIX1 (OFF_PREFIX0 + 16 + 2 * 16)
#define OFF_NAME1 (OFF_PREFIX1 + 16)  /* "sessions": length byte, 8 bytes */
#define OFF_WL1 (OFF_NAME1 + 1 + 8)   /* sessions' content */
#define SAMPLE_LEN (OFF_WL1 + 24 + 25 + 8 + 4)

/* Opens dir, loads, closes; returns load's result (state freed). */
static int load_once(const char *dir, const char **msg_out, char *msgbuf, size_t msglen)
{
    dpr_store *s = NULL;
    dpr_domains_state st = { .domains = NULL };
    int rc = dpr_store_file_open(dir, &s, NULL);

    if (rc < 0)
        return rc;
    rc = dpr_store_load(s, &st);
    if (rc == 0)
        dpr_domains_state_free(&st);
    if (msgbuf) {
        snprintf(msgbuf, msglen, "%s", dpr_store_error(s));
        if (msg_out)
            *msg_out = msgbuf;
    }
    dpr_store_close(s);
    return rc;
}

TEST(round_trip)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_domains_state in = sample_all(), out = { .domains = NULL };

    path_in(dir, sizeof(dir), base, "rt");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), -ENOENT);
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&in, &out));
    dpr_domains_state_free(&out);
    /* a second save replaces the first */
    in.generation = 41;
    in.domains[0].state.world_line = 4;
    in.domains[0].state.generation = 18;
    in.domains[0].state.nworkers = 2;
    in.domains[0].state.nprefixes = 1;
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    dpr_store_close(s);

    s = NULL;
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&in, &out));
    dpr_domains_state_free(&out);
    /* and a third with one domain fewer */
    in.n = 1;
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&in, &out));
    CHECK(strcmp(out.domains[0].name, "kv") == 0);
    dpr_domains_state_free(&out);
    dpr_store_close(s);
}

TEST(empty_state)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_state c = { .world_line = 1 };
    dpr_domains_state none = { .generation = 3 }, in = one("d", c), out = { .domains = NULL };

    path_in(dir, sizeof(dir), base, "empty");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    /* no domain at all */
    CHECK_EQ_INT(dpr_store_save(s, &none), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&none, &out));
    CHECK_EQ_U64(out.n, 0);
    dpr_domains_state_free(&out);
    /* one domain without workers, a name of one character */
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&in, &out));
    CHECK_EQ_U64(out.domains[0].state.nworkers, 0);
    dpr_domains_state_free(&out);
    dpr_store_close(s);
}

TEST(save_refuses_inconsistent_state)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state bad_cut[] = { { 1, 5, 4, "", false } };
    dpr_finder_worker_state unsorted[] = { { 2, 0, 0, "", false }, { 1, 0, 0, "", false } };
    dpr_dep unsorted_cut[] = { { 5, 1 }, { 4, 1 } };
    dpr_finder_prefix late[] = { { 2, 0, NULL } };
    dpr_finder_prefix bad_prefix[] = { { 1, 2, unsorted_cut } };
    dpr_finder_state st = { .workers = NULL };
    dpr_domains_state all = one("kv", st), two = sample_all();

    path_in(dir, sizeof(dir), base, "incons");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    /* domain names: invalid, unsorted, duplicate; records missing */
    strcpy(two.domains[1].name, "Sessions");
    CHECK_EQ_INT(dpr_store_save(s, &two), -EINVAL);
    CHECK(strstr(dpr_store_error(s), "domain 1 has an invalid name") != NULL);
    strcpy(two.domains[1].name, "");
    CHECK_EQ_INT(dpr_store_save(s, &two), -EINVAL);
    strcpy(two.domains[1].name, "ab");
    CHECK_EQ_INT(dpr_store_save(s, &two), -EINVAL);
    CHECK(strstr(dpr_store_error(s), "not strictly increasing") != NULL);
    strcpy(two.domains[1].name, "kv");
    CHECK_EQ_INT(dpr_store_save(s, &two), -EINVAL);
    two.domains = NULL;
    CHECK_EQ_INT(dpr_store_save(s, &two), -EINVAL);
    /* a domain's content */
#define save_one(c) (all = one("kv", (c)), dpr_store_save(s, &all))
    CHECK_EQ_INT(save_one(st), -EINVAL); /* world-line 0 */
    CHECK(strstr(dpr_store_error(s), "domain 'kv': world-line is 0") != NULL);
    st.world_line = 1;
    st.nworkers = 1;
    st.workers = bad_cut;
    CHECK_EQ_INT(save_one(st), -EINVAL);
    st.nworkers = 2;
    st.workers = unsorted;
    CHECK_EQ_INT(save_one(st), -EINVAL);
    st.workers = NULL;
    CHECK_EQ_INT(save_one(st), -EINVAL);
    st.nworkers = 0;
    st.world_line = 2;
    st.nprefixes = 1;
    st.prefixes = late; /* a prefix of the current world-line */
    CHECK_EQ_INT(save_one(st), -EINVAL);
    st.prefixes = bad_prefix;
    CHECK_EQ_INT(save_one(st), -EINVAL);
    st.nprefixes = DPR_FINDER_MAX_PREFIXES + 1;
    CHECK_EQ_INT(save_one(st), -EINVAL);
#undef save_one
    all.n = 0;
    CHECK_EQ_INT(dpr_store_load(s, &all), -ENOENT); /* nothing was written */
    dpr_store_close(s);
}

static int save_sample(const char *dir)
{
    dpr_store *s = NULL;
    dpr_domains_state in = sample_all();
    int rc = dpr_store_file_open(dir, &s, NULL);

    if (rc < 0)
        return rc;
    rc = dpr_store_save(s, &in);
    dpr_store_close(s);
    return rc;
}

TEST(every_byte_corruption_detected)
{
    char dir[300], file[400], msg[600];
    unsigned char *orig = NULL;
    size_t len = 0;
    int undetected = 0, wrong_code = 0;

    path_in(dir, sizeof(dir), base, "corrupt");
    CHECK_EQ_INT(save_sample(dir), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(read_file(file, &orig, &len), 0);
    CHECK_EQ_U64(len, SAMPLE_LEN);
    for (size_t i = 0; i < len; i++) {
        static const unsigned char flips[] = { 0x01, 0x80, 0xff, 0x10 };
        for (size_t k = 0; k < sizeof(flips); k++) {
            int rc;
            orig[i] ^= flips[k];
            CHECK_EQ_INT(write_file(file, orig, len), 0);
            rc = load_once(dir, NULL, msg, sizeof(msg));
            if (rc == 0)
                undetected++;
            else if (rc != -EBADMSG)
                wrong_code++;
            else if (!strstr(msg, "finder.state"))
                wrong_code++; /* the message names the file */
            orig[i] ^= flips[k];
        }
    }
    CHECK_EQ_INT(undetected, 0);
    CHECK_EQ_INT(wrong_code, 0);
    /* the original still loads */
    CHECK_EQ_INT(write_file(file, orig, len), 0);
    CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), 0);
    free(orig);
}

TEST(every_truncation_detected)
{
    char dir[300], file[400], msg[600];
    unsigned char *orig = NULL;
    size_t len = 0;
    int bad = 0;

    path_in(dir, sizeof(dir), base, "trunc");
    CHECK_EQ_INT(save_sample(dir), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(read_file(file, &orig, &len), 0);
    for (size_t n = 0; n < len; n++) {
        CHECK_EQ_INT(write_file(file, orig, n), 0);
        if (load_once(dir, NULL, msg, sizeof(msg)) != -EBADMSG)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* and trailing garbage */
    orig = realloc(orig, len + 1);
    orig[len] = 0;
    CHECK_EQ_INT(write_file(file, orig, len + 1), 0);
    CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), -EBADMSG);
    free(orig);
}

/* A valid checksum over invalid content is still refused. */
static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

#include <zlib.h>
static void fix_crc(unsigned char *p, size_t len)
{
    uint32_t c = (uint32_t)crc32(0L, p, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        p[len - 4 + i] = (unsigned char)(c >> (8 * i));
}

/* One field of a valid file changed, with a valid checksum. */
typedef struct content_case {
    const char *what;
    size_t off;
    uint64_t value;
    const char *needle; /* in the error message, or NULL */
} content_case;

TEST(inconsistent_content_detected)
{
    char dir[300], file[400], msg[600];
    const char *m = NULL;
    unsigned char *orig = NULL, *copy;
    size_t len = 0;
    const content_case cases[] = {
        { "world-line 0", OFF_WL, 0, "domain 'kv': world-line is 0" },
        { "world-line 0 (second domain)", OFF_WL1, 0, "domain 'sessions': world-line is 0" },
        { "cut above durable (worker 0)", OFF_W0 + 8, 6, "cut" },
        { "unsorted ids: worker 1 becomes 0", OFF_W1, 0, "increasing" },
        { "duplicate ids", OFF_W1, 1, NULL },
        { "worker count that does not match the length", OFF_NWORKERS, UINT64_MAX, "length" },
        { "too many prefixes for the length", OFF_NPREFIXES, 3, "length" },
        { "prefix of a world-line that has not ended", OFF_PREFIX1, 3, "world-line 3" },
        { "prefixes out of order", OFF_PREFIX1, 1, NULL },
        { "prefix cut with version 0", OFF_PREFIX0 + 16 + 8, 0, "prefix" },
        { "prefix cut unsorted", OFF_PREFIX0 + 16 + 16, 1, NULL },
        { "more domains than fit", OFF_NDOMAINS, 3, "length" },
        { "fewer domains than there are", OFF_NDOMAINS, 1, "length" },
        { "a huge domain count", OFF_NDOMAINS, UINT64_MAX, "length" },
    };
    /* single bytes: name lengths and names */
    const struct {
        const char *what;
        size_t off;
        unsigned char value;
        const char *needle;
    } byte_cases[] = {
        { "name length 0", OFF_NAME0, 0, "length" },
        { "name length above the maximum", OFF_NAME0, DPR_DOMAIN_MAX + 1, "length" },
        { "name length one long", OFF_NAME0, 3, "length" },
        { "an upper-case name", OFF_NAME0 + 1, 'K', "domain 0 has an invalid name" },
        { "a NUL in a name", OFF_NAME1 + 4, 0, "domain 1 has an invalid name" },
        { "a name starting with a dot", OFF_NAME1 + 1, '.', "domain 1 has an invalid name" },
        { "names out of order", OFF_NAME0 + 1, 't', "not strictly increasing ('sessions' after "
                                                    "'tv')" },
    };

    path_in(dir, sizeof(dir), base, "content");
    CHECK_EQ_INT(save_sample(dir), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(read_file(file, &orig, &len), 0);
    copy = malloc(len);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const content_case *c = &cases[i];
        memcpy(copy, orig, len);
        put_le64(copy + c->off, c->value);
        fix_crc(copy, len);
        CHECK_EQ_INT(write_file(file, copy, len), 0);
        int rc = load_once(dir, &m, msg, sizeof(msg));
        if (rc != -EBADMSG || (c->needle && !strstr(m, c->needle)))
            fprintf(stderr, "  case: %s (message: %s)\n", c->what, m ? m : "-");
        CHECK_EQ_INT(rc, -EBADMSG);
        CHECK(!c->needle || strstr(m, c->needle) != NULL);
    }

    for (size_t i = 0; i < sizeof(byte_cases) / sizeof(byte_cases[0]); i++) {
        memcpy(copy, orig, len);
        copy[byte_cases[i].off] = byte_cases[i].value;
        fix_crc(copy, len);
        CHECK_EQ_INT(write_file(file, copy, len), 0);
        int rc = load_once(dir, &m, msg, sizeof(msg));
        if (rc != -EBADMSG || !strstr(m, byte_cases[i].needle))
            fprintf(stderr, "  case: %s (message: %s)\n", byte_cases[i].what, m ? m : "-");
        CHECK_EQ_INT(rc, -EBADMSG);
        CHECK(strstr(m, byte_cases[i].needle) != NULL);
    }

    /* other format */
    memcpy(copy, orig, len);
    copy[8] = 5;
    fix_crc(copy, len);
    CHECK_EQ_INT(write_file(file, copy, len), 0);
    CHECK_EQ_INT(load_once(dir, &m, msg, sizeof(msg)), -EBADMSG);
    CHECK(strstr(m, "format") != NULL);

    /* not ours at all */
    CHECK_EQ_INT(write_file(file, (const unsigned char *)"hello world, not a state file at all..", 39), 0);
    CHECK_EQ_INT(load_once(dir, &m, msg, sizeof(msg)), -EBADMSG);
    CHECK(strstr(m, "magic") != NULL);

    free(copy);
    free(orig);
}

/* Format 3 keeps every token byte, up to the longest allowed. */
TEST(tokens_round_trip)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state ws[3];
    dpr_finder_state in = { .workers = NULL };
    dpr_domains_state all, got = { .domains = NULL };
    const dpr_finder_state *out;

    memset(ws, 0, sizeof(ws));
    ws[0].worker = 1;
    for (int i = 0; i < DPR_FINDER_TOKEN_MAX; i++)
        ws[0].token[i] = (char)(0x21 + i % (0x7f - 0x21)); /* every visible character */
    ws[1].worker = 2;
    ws[2].worker = 3;
    ws[2].token[0] = '~';
    in.world_line = 1;
    in.nworkers = 3;
    in.workers = ws;
    all = one("tokens", in);
    path_in(dir, sizeof(dir), base, "tokens");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_save(s, &all), 0);
    CHECK_EQ_INT(dpr_store_load(s, &got), 0);
    CHECK(domains_states_equal(&all, &got));
    out = &got.domains[0].state;
    CHECK_EQ_U64(strlen(out->workers[0].token), DPR_FINDER_TOKEN_MAX);
    CHECK(strcmp(out->workers[1].token, "") == 0);
    CHECK(strcmp(out->workers[2].token, "~") == 0);
    dpr_domains_state_free(&got);
    dpr_store_close(s);
}

/* Issue 13: a worker that left on purpose is stored as away (format 4, a
 * flags byte per worker), only while one is; format 3 otherwise, so that
 * an older finder still reads the state. Every damaged byte of a format-4
 * image is caught, unknown flags and an away mark above the cut too. */
TEST(away_round_trip)
{
    char dir[300], file[400], msg[600];
    const char *m = NULL;
    dpr_store *s = NULL;
    dpr_finder_worker_state ws[2];
    dpr_finder_state in = { .workers = NULL };
    dpr_domains_state all, got = { .domains = NULL };
    unsigned char *img = NULL;
    size_t len = 0;
    int undetected = 0;
    dpr_buf b;

    memset(ws, 0, sizeof(ws));
    ws[0].worker = 1;
    ws[0].cut = 4;
    ws[0].durable = 6;
    ws[1].worker = 2;
    ws[1].cut = 5;
    ws[1].durable = 5;
    snprintf(ws[1].token, sizeof(ws[1].token), "tok");
    in.world_line = 2;
    in.generation = 9;
    in.nworkers = 2;
    in.workers = ws;
    all = one("kv", in);
    path_in(dir, sizeof(dir), base, "away");
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);

    /* nobody away: format 3 */
    CHECK_EQ_INT(dpr_store_save(s, &all), 0);
    CHECK_EQ_INT(read_file(file, &img, &len), 0);
    CHECK_EQ_INT(img[8], 3);
    free(img);
    img = NULL;

    /* worker 2 away: format 4, one byte more per worker */
    ws[1].away = true;
    CHECK_EQ_INT(dpr_store_save(s, &all), 0);
    CHECK_EQ_INT(dpr_store_load(s, &got), 0);
    CHECK(domains_states_equal(&all, &got));
    CHECK(!got.domains[0].state.workers[0].away);
    CHECK(got.domains[0].state.workers[1].away);
    dpr_domains_state_free(&got);
    /* the image store (the agents' Raft log) is the same image */
    dpr_buf_init(&b);
    CHECK_EQ_INT(dpr_store_image_encode(&all, &b, NULL), 0);
    CHECK_EQ_INT(dpr_store_image_decode(b.data, b.len, "entry", &got, NULL), 0);
    CHECK(domains_states_equal(&all, &got));
    dpr_domains_state_free(&got);
    dpr_buf_free(&b);
    /* away above the cut is inconsistent: not saved */
    ws[0].away = true;
    CHECK_EQ_INT(dpr_store_save(s, &all), -EINVAL);
    CHECK(strstr(dpr_store_error(s), "worker 1 is away") != NULL);
    ws[0].away = false;
    dpr_store_close(s);

    CHECK_EQ_INT(read_file(file, &img, &len), 0);
    CHECK_EQ_INT(img[8], 4);
    for (size_t i = 0; i < len; i++) {
        static const unsigned char flips[] = { 0x01, 0x80, 0xff, 0x10 };
        for (size_t k = 0; k < sizeof(flips); k++) {
            img[i] ^= flips[k];
            CHECK_EQ_INT(write_file(file, img, len), 0);
            if (load_once(dir, NULL, msg, sizeof(msg)) != -EBADMSG)
                undetected++;
            img[i] ^= flips[k];
        }
    }
    CHECK_EQ_INT(undetected, 0);
    /* worker 2's flags byte is the last byte of its record, before
     * nprefixes (8) and the CRC (4) */
    /* header 25, name 1 + 2, content head 24, worker 1's id/cut/durable 24
     * and token length 1 (no token) */
    size_t flags_at[2] = { len - 4 - 8 - 1, 25 + 3 + 24 + 24 + 1 };
    static const struct {
        int worker;
        unsigned char before, value;
        const char *needle;
    } cases[] = {
        { 0, 1, 3, "worker 2 has unknown flags" },
        /* an away mark on worker 1 (cut 4, durable 6) */
        { 1, 0, 1, "worker 1 is away with cut 4 below its durable version 6" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t at = flags_at[cases[i].worker];
        CHECK_EQ_INT(img[at], cases[i].before);
        img[at] = cases[i].value; /* under a valid CRC */
        fix_crc(img, len);
        CHECK_EQ_INT(write_file(file, img, len), 0);
        CHECK_EQ_INT(load_once(dir, &m, msg, sizeof(msg)), -EBADMSG);
        CHECK(strstr(m, cases[i].needle) != NULL);
        img[at] = cases[i].before;
    }
    free(img);
}

/* A state with a token the finder would never accept is not saved, and the
 * message does not show the token. */
TEST(save_refuses_bad_tokens)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state ws[1];
    dpr_finder_state st = { .workers = NULL };
    dpr_domains_state all;
    static const char *const bad[] = { "with space", "tab\there", "del\x7f", "\xc3\xa9t\xc3\xa9" };

    path_in(dir, sizeof(dir), base, "badtokens");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    st.world_line = 1;
    st.nworkers = 1;
    st.workers = ws;
    all = one("kv", st);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(ws, 0, sizeof(ws));
        ws[0].worker = 5;
        snprintf(ws[0].token, sizeof(ws[0].token), "%s", bad[i]);
        CHECK_EQ_INT(dpr_store_save(s, &all), -EINVAL);
        CHECK(strstr(dpr_store_error(s), "worker 5 has an invalid token") != NULL);
        CHECK(strstr(dpr_store_error(s), bad[i]) == NULL);
    }
    /* not terminated within its array */
    memset(ws[0].token, 'x', sizeof(ws[0].token));
    CHECK_EQ_INT(dpr_store_save(s, &all), -EINVAL);
    CHECK_EQ_INT(dpr_store_load(s, &all), -ENOENT);
    dpr_store_close(s);
}

/* Damaged token fields under a valid checksum are corrupt (-EBADMSG), and
 * the message never shows token bytes. */
TEST(corrupt_token_fields_detected)
{
    char dir[300], file[400], msg[600];
    const char *m = NULL;
    unsigned char *orig = NULL, *copy;
    size_t len = 0;
    struct {
        const char *what;
        size_t off;
        unsigned char value;
        const char *needle;
    } cases[] = {
        { "token length above the maximum", OFF_W0 + 24, DPR_FINDER_TOKEN_MAX + 1, "length" },
        { "token length 255", OFF_W0 + 24, 255, "length" },
        { "token length one short", OFF_W0 + 24, 5, "length" },
        { "token length one long", OFF_W0 + 24, 7, "length" },
        { "a token length where there is none", OFF_W1 + 24, 1, "length" },
        { "a space in a token", OFF_W0 + 25 + 2, ' ', "worker 1 has an invalid token" },
        { "a NUL in a token", OFF_W2 + 25, 0, "worker 42 has an invalid token" },
        { "DEL in a token", OFF_W2 + 25 + 2, 0x7f, "worker 42 has an invalid token" },
        { "a high byte in a token", OFF_W0 + 25, 0xc3, "worker 1 has an invalid token" },
    };

    path_in(dir, sizeof(dir), base, "tokcorrupt");
    CHECK_EQ_INT(save_sample(dir), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(read_file(file, &orig, &len), 0);
    CHECK_EQ_U64(len, SAMPLE_LEN);
    CHECK(memcmp(orig + OFF_W0 + 25, "s3cr3t", 6) == 0); /* the layout assumed */
    copy = malloc(len);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(copy, orig, len);
        copy[cases[i].off] = cases[i].value;
        fix_crc(copy, len);
        CHECK_EQ_INT(write_file(file, copy, len), 0);
        int rc = load_once(dir, &m, msg, sizeof(msg));
        if (rc != -EBADMSG || !strstr(m, cases[i].needle))
            fprintf(stderr, "  case: %s (message: %s)\n", cases[i].what, m ? m : "-");
        CHECK_EQ_INT(rc, -EBADMSG);
        CHECK(strstr(m, cases[i].needle) != NULL);
        CHECK(strstr(m, "s3") == NULL && strstr(m, "abc") == NULL);
    }
    free(copy);
    free(orig);
}

/* The image a finder from before domains wrote: format 1 (no tokens) or 2
 * (tokens) of one content, into img (room for it); returns its length. */
static size_t old_image(int format, const dpr_finder_state *st, unsigned char *img)
{
    size_t n;

    memcpy(img, "DPRFIND\0", 8);
    img[8] = (unsigned char)format;
    n = 9;
    put_le64(img + n, st->world_line);
    put_le64(img + n + 8, st->generation);
    put_le64(img + n + 16, st->nworkers);
    n += 24;
    for (size_t i = 0; i < st->nworkers; i++) {
        put_le64(img + n, st->workers[i].worker);
        put_le64(img + n + 8, st->workers[i].cut);
        put_le64(img + n + 16, st->workers[i].durable);
        n += 24;
        if (format == 2) {
            size_t t = strlen(st->workers[i].token);
            img[n++] = (unsigned char)t;
            memcpy(img + n, st->workers[i].token, t);
            n += t;
        }
    }
    put_le64(img + n, st->nprefixes);
    n += 8;
    for (size_t i = 0; i < st->nprefixes; i++) {
        put_le64(img + n, st->prefixes[i].world_line);
        put_le64(img + n + 8, st->prefixes[i].n);
        n += 16;
        for (size_t j = 0; j < st->prefixes[i].n; j++) {
            put_le64(img + n, st->prefixes[i].cut[j].worker);
            put_le64(img + n + 8, st->prefixes[i].cut[j].version);
            n += 16;
        }
    }
    n += 4;
    fix_crc(img, n);
    return n;
}

/*
 * Files of formats 1 (before tokens) and 2 (before domains) still load, as
 * one domain "default" (format 1: workers without tokens); the next save
 * writes format 3, which loads the same; damaged old files are refused.
 */
TEST(old_formats_load_as_default)
{
    for (int format = 1; format <= 2; format++) {
        char dir[300], file[400], name[32];
        dpr_store *s = NULL;
        dpr_domains_state out = { .domains = NULL }, want;
        dpr_finder_state content = sample();
        dpr_finder_worker_state plain[4];
        unsigned char img[512], *data = NULL;
        size_t n, len = 0, tokens = 0;

        n = old_image(format, &content, img);
        snprintf(name, sizeof(name), "format%d", format);
        path_in(dir, sizeof(dir), base, name);
        CHECK_EQ_INT(mkdir(dir, 0700), 0);
        path_in(file, sizeof(file), dir, "finder.state");
        CHECK_EQ_INT(write_file(file, img, n), 0);

        CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
        CHECK_EQ_INT(dpr_store_load(s, &out), 0);
        if (format == 1) {
            memcpy(plain, content.workers, sizeof(plain));
            for (size_t i = 0; i < 4; i++)
                plain[i].token[0] = '\0';
            content.workers = plain;
        }
        want = one(DPR_DOMAIN_DEFAULT, content); /* the generation is the content's */
        CHECK(domains_states_equal(&want, &out));
        CHECK_EQ_U64(out.n, 1);
        CHECK(strcmp(out.domains[0].name, "default") == 0);
        /* the next save writes format 3, which loads the same */
        CHECK_EQ_INT(dpr_store_save(s, &out), 0);
        dpr_domains_state_free(&out);
        CHECK_EQ_INT(dpr_store_load(s, &out), 0);
        CHECK(domains_states_equal(&want, &out));
        dpr_domains_state_free(&out);
        dpr_store_close(s);
        CHECK_EQ_INT(read_file(file, &data, &len), 0);
        CHECK(len > 8 && data[8] == 3);
        if (format == 1) /* a token length byte per worker (the tokens are empty) */
            tokens = content.nworkers;
        /* the header (generation, count) and the name, plus token fields */
        CHECK_EQ_U64(len, n + 16 + 1 + strlen("default") + tokens);
        free(data);

        /* every damaged byte of an old file is refused */
        {
            int undetected = 0;
            for (size_t i = 0; i < n; i++) {
                img[i] ^= 0x01;
                CHECK_EQ_INT(write_file(file, img, n), 0);
                undetected += load_once(dir, NULL, NULL, 0) != -EBADMSG;
                img[i] ^= 0x01;
            }
            CHECK_EQ_INT(undetected, 0);
        }
        /* so is a body of another format labelled this one */
        img[8] = (unsigned char)(3 - format); /* 1 <-> 2 */
        fix_crc(img, n);
        CHECK_EQ_INT(write_file(file, img, n), 0);
        CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), -EBADMSG);
        CHECK_EQ_INT(save_sample(dir), 0);
        CHECK_EQ_INT(read_file(file, &data, &len), 0);
        data[8] = (unsigned char)format; /* a format-3 body */
        fix_crc(data, len);
        CHECK_EQ_INT(write_file(file, data, len), 0);
        CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), -EBADMSG);
        free(data);
    }
}

TEST(leftover_tmp_file)
{
    char dir[300], tmp[400], file[400];
    struct stat sb;
    dpr_store *s = NULL;
    dpr_domains_state out = { .domains = NULL }, in = sample_all();

    /* a tmp file alone (crash before the first rename): no state */
    path_in(dir, sizeof(dir), base, "tmp");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    path_in(tmp, sizeof(tmp), dir, "finder.state.tmp");
    CHECK_EQ_INT(write_file(tmp, (const unsigned char *)"half a file", 11), 0);
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), -ENOENT);
    CHECK(stat(tmp, &sb) < 0 && errno == ENOENT);
    dpr_store_close(s);

    /* a tmp file next to a good state: the state wins */
    CHECK_EQ_INT(save_sample(dir), 0);
    CHECK_EQ_INT(write_file(tmp, (const unsigned char *)"garbage", 7), 0);
    s = NULL;
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(domains_states_equal(&in, &out));
    dpr_domains_state_free(&out);
    dpr_store_close(s);
    CHECK(stat(tmp, &sb) < 0 && errno == ENOENT);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK(stat(file, &sb) == 0 && (sb.st_mode & 077) == 0);
}

TEST(lock_held_is_busy)
{
    char dir[300];
    dpr_store *a = NULL, *b = NULL;
    dpr_err err = DPR_ERR_INIT;

    path_in(dir, sizeof(dir), base, "lock");
    CHECK_EQ_INT(dpr_store_file_open(dir, &a, NULL), 0);
    CHECK_EQ_INT(dpr_store_file_open(dir, &b, &err), -EBUSY);
    CHECK(b == NULL);
    CHECK(strstr(err.msg, "another dpr-finder") != NULL);
    CHECK(strstr(err.msg, "finder.lock") != NULL); /* names the lock */
    CHECK_EQ_INT(err.code, -EBUSY);
    dpr_store_close(a);
    /* released on close */
    CHECK_EQ_INT(dpr_store_file_open(dir, &b, &err), 0);
    dpr_store_close(b);
}

TEST(missing_dir_created)
{
    char dir[300];
    struct stat sb;
    dpr_store *s = NULL;
    dpr_domains_state in = sample_all();

    snprintf(dir, sizeof(dir), "%s/a/b/c/", base);
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    dpr_store_close(s);
    snprintf(dir, sizeof(dir), "%s/a/b/c", base);
    CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), 0);
}

TEST(unusable_dir_error)
{
    char file[300], dir[400];
    dpr_store *s = NULL;
    dpr_err err = DPR_ERR_INIT;

    /* a path below a regular file can never be created (even as root) */
    path_in(file, sizeof(file), base, "plainfile");
    CHECK_EQ_INT(write_file(file, (const unsigned char *)"x", 1), 0);
    path_in(dir, sizeof(dir), file, "state");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, &err), -ENOTDIR);
    CHECK(s == NULL);
    CHECK(strstr(err.msg, "plainfile") != NULL);

    CHECK_EQ_INT(dpr_store_file_open("", &s, &err), -EINVAL);
    CHECK(err.msg[0] != '\0');

    if (geteuid() != 0) { /* permissions do not stop root */
        path_in(dir, sizeof(dir), base, "readonly");
        CHECK_EQ_INT(mkdir(dir, 0500), 0);
        CHECK_EQ_INT(dpr_store_file_open(dir, &s, &err), -EACCES);
        CHECK(strstr(err.msg, "readonly") != NULL);
    }
}

TEST(unreadable_state_is_an_error)
{
    char dir[300], file[400];
    const char *m = NULL;
    char msg[600];

    /* a directory where the file should be: not ENOENT, not silently fresh */
    path_in(dir, sizeof(dir), base, "isdir");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(mkdir(file, 0700), 0);
    {
        int rc = load_once(dir, &m, msg, sizeof(msg));
        CHECK(rc < 0 && rc != -ENOENT);
    }
    CHECK(m != NULL && strstr(m, "finder.state") != NULL);
}

int main(void)
{
    make_base();
    RUN(round_trip);
    RUN(empty_state);
    RUN(save_refuses_inconsistent_state);
    RUN(every_byte_corruption_detected);
    RUN(every_truncation_detected);
    RUN(inconsistent_content_detected);
    RUN(tokens_round_trip);
    RUN(away_round_trip);
    RUN(save_refuses_bad_tokens);
    RUN(corrupt_token_fields_detected);
    RUN(old_formats_load_as_default);
    RUN(leftover_tmp_file);
    RUN(lock_held_is_busy);
    RUN(missing_dir_created);
    RUN(unusable_dir_error);
    RUN(unreadable_state_is_an_error);
    rm_rf(base);
    return check_summary("store");
}
