/* Licensed under the Apache License, Version 2.0.
 *
 * test_utf8.c: unit tests for ws_utf8.c.
 */

#include "ws_engine.h"
#include "t/unit/unit.h"

#define U(s) ((const unsigned char *)(s))

/* Valid whole, and valid split at every position. */
static void check_valid(const char *s, int line)
{
    apr_size_t len = strlen(s), cut;
    int ok = ws_utf8_valid(U(s), len);

    for (cut = 0; cut <= len; cut++) {
        ws_utf8_state st;

        ws_utf8_init(&st);
        ok = ok && ws_utf8_feed(&st, U(s), cut) != WS_UTF8_INVALID
             && ws_utf8_feed(&st, U(s) + cut, len - cut) == WS_UTF8_OK;
    }
    unit_check(ok, __FILE__, line, s);
}

/* Invalid, and fed one byte at a time the first _INVALID comes at byte
 * bad (and the state stays invalid). */
static void check_invalid_at(const char *s, apr_size_t bad, int line)
{
    apr_size_t len = strlen(s), i;
    ws_utf8_state st;
    int ok = !ws_utf8_valid(U(s), len);

    ws_utf8_init(&st);
    for (i = 0; i < len; i++) {
        int rv = ws_utf8_feed(&st, U(s) + i, 1);

        ok = ok && (i < bad ? rv != WS_UTF8_INVALID : rv == WS_UTF8_INVALID);
    }
    ok = ok && ws_utf8_feed(&st, U("a"), 1) == WS_UTF8_INVALID;
    ws_utf8_init(&st);
    ok = ok && ws_utf8_feed(&st, U(s), len) == WS_UTF8_INVALID;
    if (!ok) {
        fprintf(stderr, "%s:%d: expected failure at byte %lu\n", __FILE__,
                line, (unsigned long)bad);
    }
    unit_check(ok, __FILE__, line, "invalid at the expected byte");
}

/* Valid so far but inside a character. */
static void check_partial(const char *s, int line)
{
    ws_utf8_state st;

    ws_utf8_init(&st);
    unit_check(ws_utf8_feed(&st, U(s), strlen(s)) == WS_UTF8_PARTIAL
               && !ws_utf8_valid(U(s), strlen(s)), __FILE__, line, s);
}

#define VALID(s) check_valid(s, __LINE__)
#define INVALID_AT(s, bad) check_invalid_at(s, bad, __LINE__)
#define PARTIAL(s) check_partial(s, __LINE__)

static void test_valid(void)
{
    VALID("");
    VALID("abc");
    VALID("\x7F");
    VALID("\xC2\x80");                  /* U+0080 */
    VALID("\xDF\xBF");                  /* U+07FF */
    VALID("\xE0\xA0\x80");              /* U+0800 */
    VALID("\xED\x9F\xBF");              /* U+D7FF */
    VALID("\xEE\x80\x80");              /* U+E000 */
    VALID("\xEF\xBF\xBD");              /* U+FFFD */
    VALID("\xEF\xBF\xBE");              /* U+FFFE: a noncharacter, valid */
    VALID("\xEF\xBF\xBF");              /* U+FFFF */
    VALID("\xF0\x90\x80\x80");          /* U+10000 */
    VALID("\xF3\xBF\xBF\xBF");          /* U+FFFFF */
    VALID("\xF4\x8F\xBF\xBF");          /* U+10FFFF */
    VALID("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"); /* kosme */
    VALID("Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0"
          "\xC3\xA1-UTF-8!!");
    /* ASCII runs long enough for the 8-byte fast path, before, between
     * and after multi-byte characters */
    VALID("0123456789abcdefghij\xE2\x82\xAC" "0123456789abcdefghijk"
          "\xF0\x9F\x98\x80" "0123456789");
}

static void test_invalid(void)
{
    /* lone continuation bytes and bytes that never appear */
    INVALID_AT("\x80", 0);
    INVALID_AT("\xBF", 0);
    INVALID_AT("ab\x80", 2);
    INVALID_AT("\xC0", 0);
    INVALID_AT("\xC1", 0);
    INVALID_AT("\xF5\x80\x80\x80", 0);
    INVALID_AT("\xF8\x88\x80\x80\x80", 0);
    INVALID_AT("\xFC\x84\x80\x80\x80\x80", 0);
    INVALID_AT("\xFE", 0);
    INVALID_AT("\xFF", 0);
    /* overlong forms of '/' and the largest overlong of each length */
    INVALID_AT("\xC0\xAF", 0);
    INVALID_AT("\xE0\x80\xAF", 1);
    INVALID_AT("\xF0\x80\x80\xAF", 1);
    INVALID_AT("\xC1\xBF", 0);
    INVALID_AT("\xE0\x9F\xBF", 1);
    INVALID_AT("\xF0\x8F\xBF\xBF", 1);
    INVALID_AT("\xC0\x80", 0);          /* overlong NUL */
    /* surrogates, single and paired */
    INVALID_AT("\xED\xA0\x80", 1);
    INVALID_AT("\xED\xAD\xBF", 1);
    INVALID_AT("\xED\xAE\x80", 1);
    INVALID_AT("\xED\xAF\xBF", 1);
    INVALID_AT("\xED\xB0\x80", 1);
    INVALID_AT("\xED\xBE\x80", 1);
    INVALID_AT("\xED\xBF\xBF", 1);
    INVALID_AT("\xED\xA0\x80\xED\xB0\x80", 1);
    INVALID_AT("abc\xED\xA0\x80", 4);
    /* above U+10FFFF */
    INVALID_AT("\xF4\x90\x80\x80", 1);
    INVALID_AT("\xF4\xBF\xBF\xBF", 1);
    /* a sequence cut short by a non-continuation byte */
    INVALID_AT("\xC2\x41", 1);
    INVALID_AT("\xE1\x80\x41", 2);
    INVALID_AT("\xF1\x80\x80\x41", 3);
    INVALID_AT("ab\xC2\xC2", 3);
    INVALID_AT("\xE2\x82\xAC\xE2\x82\xE2\x82\xAC", 5);
    /* failure after a fast-path run */
    INVALID_AT("0123456789abcdef\xF4\x90", 17);
}

static void test_partial(void)
{
    PARTIAL("\xC2");
    PARTIAL("\xE0\xA0");
    PARTIAL("\xE1");
    PARTIAL("\xED\x9F");
    PARTIAL("\xF0\x90\x80");
    PARTIAL("\xF4\x8F\xBF");
    PARTIAL("abc\xF1");
}

/* A decoder written the other way round, by arithmetic: decode each
 * sequence, then reject overlong, surrogate and out-of-range values. */
static int reference_valid(const unsigned char *s, apr_size_t len)
{
    static const unsigned long min[4] = { 0, 0x80, 0x800, 0x10000 };
    apr_size_t i = 0;

    while (i < len) {
        unsigned long cp;
        apr_size_t n, k;

        if (s[i] < 0x80) {
            i++;
            continue;
        }
        n = (s[i] & 0xE0) == 0xC0 ? 1
            : (s[i] & 0xF0) == 0xE0 ? 2
            : (s[i] & 0xF8) == 0xF0 ? 3 : 0;
        if (!n) {
            return 0;
        }
        cp = s[i] & (0x3Fu >> n);   /* the lead byte's value bits */
        if (len - i <= n) {
            return 0;
        }
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* Every 1-, 2- and 3-byte string, and 4-byte strings over the interesting
 * continuation values, against the reference decoder. */
static void test_exhaustive(void)
{
    static const unsigned char edges[] = {
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF
    };
    unsigned long mismatches = 0, a, b, c, d;
    unsigned char s[4];

    for (a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        mismatches += ws_utf8_valid(s, 1) != reference_valid(s, 1);
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            mismatches += ws_utf8_valid(s, 2) != reference_valid(s, 2);
            for (c = 0; a >= 0xE0 && c < 256; c++) {
                s[2] = (unsigned char)c;
                mismatches += ws_utf8_valid(s, 3) != reference_valid(s, 3);
            }
        }
    }
    for (a = 0xF0; a < 0x100; a++) {
        s[0] = (unsigned char)a;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            for (c = 0; c < sizeof(edges); c++) {
                s[2] = edges[c];
                for (d = 0; d < sizeof(edges); d++) {
                    s[3] = edges[d];
                    mismatches += ws_utf8_valid(s, 4)
                                  != reference_valid(s, 4);
                }
            }
        }
    }
    CHECK_INT(mismatches, 0);
}

/* Every scalar value encodes to valid UTF-8, fed whole. */
static void test_all_scalars(void)
{
    static const unsigned char lead[5] = { 0, 0x00, 0xC0, 0xE0, 0xF0 };
    unsigned long cp, bad = 0;

    for (cp = 0; cp <= 0x10FFFF; cp++) {
        unsigned char s[4];
        apr_size_t n, k;

        if (cp >= 0xD800 && cp <= 0xDFFF) {
            continue;
        }
        n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        s[0] = (unsigned char)(lead[n] | (cp >> (6 * (n - 1))));
        for (k = 1; k < n; k++) {
            s[k] = (unsigned char)(0x80 | ((cp >> (6 * (n - 1 - k))) & 0x3F));
        }
        bad += !ws_utf8_valid(s, n);
    }
    CHECK_INT(bad, 0);
}

int main(void)
{
    test_valid();
    test_invalid();
    test_partial();
    test_exhaustive();
    test_all_scalars();
    return UNIT_DONE();
}
