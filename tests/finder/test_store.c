/* test_store.c - the file store: round trip, corruption, crash leftovers,
 * locking, directories. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
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
    { 1, 3, 5, "s3cr3t" },
    { 7, 0, 0, "" },
    { 42, 9, 9, "abc" },
    { UINT64_MAX >> 1, 1, 2, "" },
};

static dpr_dep sample_cut1[] = { { 1, 2 }, { 42, 3 } };

static dpr_finder_prefix sample_prefixes[] = {
    { 1, 2, sample_cut1 },
    { 2, 0, NULL },
};

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

/* Offsets in the sample's file (format 2: a worker takes 25 bytes and its
 * token's). */
#define OFF_W0 33
#define OFF_W1 (OFF_W0 + 25 + 6)
#define OFF_W2 (OFF_W1 + 25)
#define OFF_W3 (OFF_W2 + 25 + 3)
#define OFF_NPREFIXES (OFF_W3 + 25)
#define OFF_PREFIX0 (OFF_NPREFIXES + 8)
#define OFF_PREFIX1 (OFF_PREFIX0 + 16 + 2 * 16)
#define SAMPLE_LEN (OFF_PREFIX1 + 16 + 4)

static int states_equal(const dpr_finder_state *a, const dpr_finder_state *b)
{
    if (a->world_line != b->world_line || a->generation != b->generation ||
        a->nworkers != b->nworkers || a->nprefixes != b->nprefixes)
        return 0;
    for (size_t i = 0; i < a->nworkers; i++)
        if (a->workers[i].worker != b->workers[i].worker ||
            a->workers[i].cut != b->workers[i].cut ||
            a->workers[i].durable != b->workers[i].durable ||
            strcmp(a->workers[i].token, b->workers[i].token) != 0)
            return 0;
    for (size_t i = 0; i < a->nprefixes; i++) {
        const dpr_finder_prefix *x = &a->prefixes[i], *y = &b->prefixes[i];
        if (x->world_line != y->world_line || x->n != y->n)
            return 0;
        for (size_t j = 0; j < x->n; j++)
            if (x->cut[j].worker != y->cut[j].worker || x->cut[j].version != y->cut[j].version)
                return 0;
    }
    return 1;
}

/* Opens dir, loads, closes; returns load's result (state freed). */
static int load_once(const char *dir, const char **msg_out, char *msgbuf, size_t msglen)
{
    dpr_store *s = NULL;
    dpr_finder_state st = { .workers = NULL };
    int rc = dpr_store_file_open(dir, &s, NULL);

    if (rc < 0)
        return rc;
    rc = dpr_store_load(s, &st);
    if (rc == 0)
        dpr_finder_state_free(&st);
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
    dpr_finder_state in = sample(), out = { .workers = NULL };

    path_in(dir, sizeof(dir), base, "rt");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), -ENOENT);
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(states_equal(&in, &out));
    dpr_finder_state_free(&out);
    /* a second save replaces the first */
    in.world_line = 4;
    in.generation = 18;
    in.nworkers = 2;
    in.nprefixes = 1;
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    dpr_store_close(s);

    s = NULL;
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(states_equal(&in, &out));
    dpr_finder_state_free(&out);
    dpr_store_close(s);
}

TEST(empty_state)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_state in = { .world_line = 1 }, out = { .workers = NULL };

    path_in(dir, sizeof(dir), base, "empty");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(states_equal(&in, &out));
    CHECK_EQ_U64(out.nworkers, 0);
    dpr_finder_state_free(&out);
    dpr_store_close(s);
}

TEST(save_refuses_inconsistent_state)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state bad_cut[] = { { 1, 5, 4, "" } };
    dpr_finder_worker_state unsorted[] = { { 2, 0, 0, "" }, { 1, 0, 0, "" } };
    dpr_dep unsorted_cut[] = { { 5, 1 }, { 4, 1 } };
    dpr_finder_prefix late[] = { { 2, 0, NULL } };
    dpr_finder_prefix bad_prefix[] = { { 1, 2, unsorted_cut } };
    dpr_finder_state st = { .workers = NULL };

    path_in(dir, sizeof(dir), base, "incons");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL); /* world-line 0 */
    st.world_line = 1;
    st.nworkers = 1;
    st.workers = bad_cut;
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    st.nworkers = 2;
    st.workers = unsorted;
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    st.nworkers = 0;
    st.world_line = 2;
    st.nprefixes = 1;
    st.prefixes = late; /* a prefix of the current world-line */
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    st.prefixes = bad_prefix;
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    st.nprefixes = DPR_FINDER_MAX_PREFIXES + 1;
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(dpr_store_load(s, &st), -ENOENT); /* nothing was written */
    dpr_store_close(s);
}

static int save_sample(const char *dir)
{
    dpr_store *s = NULL;
    dpr_finder_state in = sample();
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
        { "world-line 0", 9, 0, "world-line" },
        { "cut above durable (worker 0)", OFF_W0 + 8, 6, "cut" },
        { "unsorted ids: worker 1 becomes 0", OFF_W1, 0, "increasing" },
        { "duplicate ids", OFF_W1, 1, NULL },
        { "worker count that does not match the length", 25, UINT64_MAX, "length" },
        { "too many prefixes for the length", OFF_NPREFIXES, 3, "length" },
        { "prefix of a world-line that has not ended", OFF_PREFIX1, 3, "world-line 3" },
        { "prefixes out of order", OFF_PREFIX1, 1, NULL },
        { "prefix cut with version 0", OFF_PREFIX0 + 16 + 8, 0, "prefix" },
        { "prefix cut unsorted", OFF_PREFIX0 + 16 + 16, 1, NULL },
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

    /* other format */
    memcpy(copy, orig, len);
    copy[8] = 3;
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

/* Format 2 keeps every token byte, up to the longest allowed. */
TEST(tokens_round_trip)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state ws[3];
    dpr_finder_state in = { .workers = NULL }, out = { .workers = NULL };

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
    path_in(dir, sizeof(dir), base, "tokens");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_save(s, &in), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(states_equal(&in, &out));
    CHECK_EQ_U64(strlen(out.workers[0].token), DPR_FINDER_TOKEN_MAX);
    CHECK(strcmp(out.workers[1].token, "") == 0);
    CHECK(strcmp(out.workers[2].token, "~") == 0);
    dpr_finder_state_free(&out);
    dpr_store_close(s);
}

/* A state with a token the finder would never accept is not saved, and the
 * message does not show the token. */
TEST(save_refuses_bad_tokens)
{
    char dir[300];
    dpr_store *s = NULL;
    dpr_finder_worker_state ws[1];
    dpr_finder_state st = { .workers = NULL };
    static const char *const bad[] = { "with space", "tab\there", "del\x7f", "\xc3\xa9t\xc3\xa9" };

    path_in(dir, sizeof(dir), base, "badtokens");
    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    st.world_line = 1;
    st.nworkers = 1;
    st.workers = ws;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(ws, 0, sizeof(ws));
        ws[0].worker = 5;
        snprintf(ws[0].token, sizeof(ws[0].token), "%s", bad[i]);
        CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
        CHECK(strstr(dpr_store_error(s), "worker 5 has an invalid token") != NULL);
        CHECK(strstr(dpr_store_error(s), bad[i]) == NULL);
    }
    /* not terminated within its array */
    memset(ws[0].token, 'x', sizeof(ws[0].token));
    CHECK_EQ_INT(dpr_store_save(s, &st), -EINVAL);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(dpr_store_load(s, &st), -ENOENT);
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

/* A file of format 1 (before tokens) still loads, as workers without tokens. */
TEST(format1_loads_without_tokens)
{
    char dir[300], file[400];
    dpr_store *s = NULL;
    dpr_finder_state out = { .workers = NULL }, want = sample();
    dpr_finder_worker_state plain[4];
    unsigned char img[512];
    size_t n = 0;

    /* magic, format 1, world-line, generation, workers (24 bytes each), prefixes, CRC */
    memcpy(img, "DPRFIND\0", 8);
    img[8] = 1;
    n = 9;
    put_le64(img + n, want.world_line);
    put_le64(img + n + 8, want.generation);
    put_le64(img + n + 16, want.nworkers);
    n += 24;
    for (size_t i = 0; i < want.nworkers; i++) {
        put_le64(img + n, want.workers[i].worker);
        put_le64(img + n + 8, want.workers[i].cut);
        put_le64(img + n + 16, want.workers[i].durable);
        n += 24;
    }
    put_le64(img + n, want.nprefixes);
    n += 8;
    for (size_t i = 0; i < want.nprefixes; i++) {
        put_le64(img + n, want.prefixes[i].world_line);
        put_le64(img + n + 8, want.prefixes[i].n);
        n += 16;
        for (size_t j = 0; j < want.prefixes[i].n; j++) {
            put_le64(img + n, want.prefixes[i].cut[j].worker);
            put_le64(img + n + 8, want.prefixes[i].cut[j].version);
            n += 16;
        }
    }
    n += 4;
    fix_crc(img, n);
    path_in(dir, sizeof(dir), base, "format1");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    path_in(file, sizeof(file), dir, "finder.state");
    CHECK_EQ_INT(write_file(file, img, n), 0);

    CHECK_EQ_INT(dpr_store_file_open(dir, &s, NULL), 0);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    memcpy(plain, want.workers, sizeof(plain));
    for (size_t i = 0; i < 4; i++)
        plain[i].token[0] = '\0';
    want.workers = plain;
    CHECK(states_equal(&want, &out));
    /* the next save writes format 2, which loads the same */
    CHECK_EQ_INT(dpr_store_save(s, &out), 0);
    dpr_finder_state_free(&out);
    CHECK_EQ_INT(dpr_store_load(s, &out), 0);
    CHECK(states_equal(&want, &out));
    dpr_finder_state_free(&out);
    dpr_store_close(s);
    {
        unsigned char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(read_file(file, &data, &len), 0);
        CHECK(len > 8 && data[8] == 2);
        CHECK_EQ_U64(len, n + 4); /* one token length byte per worker */
        free(data);
    }
    /* a format-1 file that is damaged is still refused */
    img[20] ^= 1;
    CHECK_EQ_INT(write_file(file, img, n), 0);
    CHECK_EQ_INT(load_once(dir, NULL, NULL, 0), -EBADMSG);
    /* and a format-2 body labelled format 1 does not fit */
    CHECK_EQ_INT(save_sample(dir), 0);
    {
        unsigned char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(read_file(file, &data, &len), 0);
        data[8] = 1;
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
    dpr_finder_state out = { .workers = NULL }, in = sample();

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
    CHECK(states_equal(&in, &out));
    dpr_finder_state_free(&out);
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
    dpr_finder_state in = sample();

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
    RUN(save_refuses_bad_tokens);
    RUN(corrupt_token_fields_detected);
    RUN(format1_loads_without_tokens);
    RUN(leftover_tmp_file);
    RUN(lock_held_is_busy);
    RUN(missing_dir_created);
    RUN(unusable_dir_error);
    RUN(unreadable_state_is_an_error);
    rm_rf(base);
    return check_summary("store");
}
