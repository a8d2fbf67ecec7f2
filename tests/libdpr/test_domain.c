/* test_domain.c - DPR domain names (dpr_domain_valid) and ids
 * (dpr_domain_id: FNV-1a 64, never 0), against published FNV-1a values. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "dpr/domain.h"

static bool valid(const char *s)
{
    return dpr_domain_valid(s, strlen(s));
}

TEST(valid_names)
{
    const char *good[] = {"default", "kv", "a", "0", "9lives", "orders.eu-1", "a-b_c.d",
                          "a--", "a..", "a__", "x0.1_2-3", "abcdefghijklmnopqrstuvwxyz0123456789"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!valid(good[i]))
            printf("     should be valid: '%s'\n", good[i]);
        CHECK(valid(good[i]));
    }
    CHECK(valid(DPR_DOMAIN_DEFAULT));
    CHECK_EQ_U64(DPR_DOMAIN_MAX, 63);
}

TEST(invalid_names)
{
    const char *bad[] = {"",     "Default", "KV",   "-a",   ".a",   "_a",  "a b", " a",
                         "a ",   "a/b",     "a:b",  "a\tb", "a\nb", "a@b", "a+b", "a,b",
                         "a*",   "\xc3\xa9", "caf\xc3\xa9", "a\x7f", "\x01", "a{b}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (valid(bad[i]))
            printf("     should be invalid: '%s'\n", bad[i]);
        CHECK(!valid(bad[i]));
    }
    /* length: 1 .. 63 bytes */
    char name[DPR_DOMAIN_MAX + 2];
    memset(name, 'a', sizeof(name));
    CHECK(dpr_domain_valid(name, DPR_DOMAIN_MAX));
    CHECK(!dpr_domain_valid(name, DPR_DOMAIN_MAX + 1));
    CHECK(!dpr_domain_valid(name, 0));
    CHECK(!dpr_domain_valid(NULL, 0));
    CHECK(!dpr_domain_valid(NULL, 3));
    /* the length is what counts, not a terminating NUL: an embedded NUL is
     * a byte like any other, and invalid */
    CHECK(!dpr_domain_valid("ab\0cd", 5));
    CHECK(dpr_domain_valid("ab\0cd", 2));
    /* every single byte: only [a-z0-9] start a name; [._-] may follow */
    for (int c = 0; c < 256; c++) {
        char one[1] = {(char)c}, two[2] = {'a', (char)c};
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        CHECK_EQ_INT(dpr_domain_valid(one, 1), alnum);
        CHECK_EQ_INT(dpr_domain_valid(two, 2), alnum || c == '.' || c == '_' || c == '-');
    }
}

/* Published FNV-1a 64 values (Fowler/Noll/Vo test suite), and the ids of
 * names the documentation and other tests use. */
TEST(fnv_vectors)
{
    CHECK_EQ_U64(dpr_domain_id("", 0), UINT64_C(0xcbf29ce484222325)); /* offset basis */
    CHECK_EQ_U64(dpr_domain_id("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
    CHECK_EQ_U64(dpr_domain_id("foobar", 6), UINT64_C(0x85944171f73967e8));
    CHECK_EQ_U64(dpr_domain_id("default", 7), UINT64_C(0xebada5168620c5fe));
    CHECK_EQ_U64(dpr_domain_id("blue", 4), UINT64_C(0xc5ccd29bc2dda64d));
    CHECK_EQ_U64(dpr_domain_id("orders.eu-1", 11), UINT64_C(0x3f2c8afbab143cce));
    /* only the given bytes count */
    CHECK_EQ_U64(dpr_domain_id("defaultXYZ", 7), dpr_domain_id("default", 7));
}

/* FNV-1a 64 of these 8 bytes is 0 (a known zero-hash input); the id, which
 * batch headers carry and for which 0 means "none", is then 1. */
TEST(id_never_zero)
{
    static const uint8_t zero[8] = {0xd5, 0x6b, 0xb9, 0x53, 0x42, 0x87, 0x08, 0x36};
    CHECK_EQ_U64(dpr_domain_id((const char *)zero, sizeof(zero)), 1);
    /* and distinct names of a family get distinct ids */
    uint64_t ids[200];
    for (int i = 0; i < 200; i++) {
        char name[16];
        int n = snprintf(name, sizeof(name), "dep-%d", i);
        ids[i] = dpr_domain_id(name, (size_t)n);
        CHECK(ids[i] != 0);
        for (int k = 0; k < i; k++)
            CHECK(ids[k] != ids[i]);
    }
}

int main(void)
{
    RUN(valid_names);
    RUN(invalid_names);
    RUN(fnv_vectors);
    RUN(id_never_zero);
    return check_summary("domain");
}
