/* Licensed under the Apache License, Version 2.0.
 *
 * fuzz_utf8.c: libFuzzer harness for the incremental UTF-8 validator
 * (ws_utf8.c), checked against glibc iconv as the trusted decoder.
 *
 * Input: byte 0 (mod 16) is the number k of split lengths that follow;
 * the next k bytes are chunk lengths (used in turn, cycling; 0 feeds an
 * empty chunk); the rest is the text.
 *
 * The reference verdict of a byte string comes from iconv UTF-8 ->
 * UTF-32LE (no //IGNORE, no //TRANSLIT):
 *   - full conversion                         -> WS_UTF8_OK
 *   - EILSEQ                                  -> WS_UTF8_INVALID
 *   - EINVAL (input ends inside a sequence)   -> WS_UTF8_PARTIAL if some
 *     completion of the unfinished tail to at most 4 bytes converts,
 *     WS_UTF8_INVALID otherwise.
 * The completion search is needed because glibc reports EINVAL, not
 * EILSEQ, for a truncated sequence that is already doomed (E0 80, ED A0,
 * F4 90, F5, F8 ...), whereas ws_utf8_feed reports INVALID at the first
 * byte that rules a sequence out.  Completions are tried with the bytes
 * 80 8F 90 9F A0 BF: every range a continuation byte may take in
 * Unicode Table 3-7 contains one of them.
 *
 * Checked behaviour of glibc's decoder (verified by selftest() at
 * start-up, which aborts if a libc differs): it rejects overlong forms
 * (C0 80, E0 80 80, F0 8F BF BF), surrogates (ED A0 80 .. ED BF BF),
 * code points above U+10FFFF (F4 90 80 80, F5..F7 leads) and 5/6-byte
 * forms (F8, FC leads); it accepts noncharacters (U+FFFE, U+FDD0) and
 * NUL, which are valid UTF-8.  So "iconv converts" == "well-formed
 * UTF-8" as RFC 3629 and Table 3-7 define it, as the engine requires.
 *
 * Checks: ws_utf8_valid(text) == reference OK; after every chunk,
 * ws_utf8_feed's return == reference verdict of the prefix fed so far
 * (which also pins INVALID to the first byte that makes it so, and
 * covers "stays invalid").
 */

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_engine.h"

#define MAX_SPLITS 16
/* at most this many chunk checks per input, to bound the iconv cost */
#define MAX_CHECKS 64

static iconv_t cd;

/* Run iconv over the whole of in; returns 0 on full conversion, else the
 * errno, with *stop set to the offset where conversion stopped. */
static int convert(const unsigned char *in, size_t len, size_t *stop)
{
    char out[1024];
    char *ip = (char *)in;
    size_t il = len;
    int err = 0;

    iconv(cd, NULL, NULL, NULL, NULL);
    while (il > 0) {
        char *op = out;
        size_t ol = sizeof(out);

        if (iconv(cd, &ip, &il, &op, &ol) != (size_t)-1) {
            break;
        }
        if (errno != E2BIG) {
            err = errno;
            break;
        }
    }
    *stop = (size_t)(ip - (char *)in);
    return err;
}

static const unsigned char probes[] = { 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF };

/* Can tail (len bytes, 1..3) be completed with up to 4-len more bytes so
 * that iconv converts it? */
static int completes(unsigned char *seq, size_t len)
{
    size_t i, stop;

    if (len >= 4) {
        return 0;
    }
    for (i = 0; i < sizeof(probes); i++) {
        seq[len] = probes[i];
        if (convert(seq, len + 1, &stop) == 0 || completes(seq, len + 1)) {
            return 1;
        }
    }
    return 0;
}

/* Reference verdict for data[0..len). */
static int reference(const unsigned char *data, size_t len)
{
    unsigned char seq[4];
    size_t stop;
    int err = convert(data, len, &stop);

    if (err == 0) {
        return WS_UTF8_OK;
    }
    if (err != EINVAL || len - stop >= 4) {
        return WS_UTF8_INVALID;
    }
    memcpy(seq, data + stop, len - stop);
    return completes(seq, len - stop) ? WS_UTF8_PARTIAL : WS_UTF8_INVALID;
}

static void expect(int got, int want, const char *what, size_t at)
{
    if (got != want) {
        fprintf(stderr, "fuzz_utf8: %s at %lu: got %d, want %d\n", what,
                (unsigned long)at, got, want);
        abort();
    }
}

/* glibc's decoder must behave as documented above. */
static void selftest(void)
{
    static const struct { const char *s; int want; } cases[] = {
        { "a\0b", WS_UTF8_OK },
        { "\xC0\x80", WS_UTF8_INVALID },
        { "\xE0\x80\x80", WS_UTF8_INVALID },
        { "\xF0\x8F\xBF\xBF", WS_UTF8_INVALID },
        { "\xED\xA0\x80", WS_UTF8_INVALID },
        { "\xED\xBF\xBF", WS_UTF8_INVALID },
        { "\xED\x9F\xBF", WS_UTF8_OK },
        { "\xF4\x8F\xBF\xBF", WS_UTF8_OK },
        { "\xF4\x90\x80\x80", WS_UTF8_INVALID },
        { "\xF5\x80\x80\x80", WS_UTF8_INVALID },
        { "\xF8\x88\x80\x80\x80", WS_UTF8_INVALID },
        { "\xEF\xBF\xBE", WS_UTF8_OK },
        { "\xE2\x82", WS_UTF8_PARTIAL },
        { "\xE0\x80", WS_UTF8_INVALID },
        { "\xF4\x90", WS_UTF8_INVALID },
        { "\xF0\x9F\x98", WS_UTF8_PARTIAL }
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].s;
        size_t len = i == 0 ? 3 : strlen(s);

        expect(reference((const unsigned char *)s, len), cases[i].want,
               "iconv self-test", i);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cd = iconv_open("UTF-32LE", "UTF-8");
    if (cd == (iconv_t)-1) {
        perror("fuzz_utf8: iconv_open");
        abort();
    }
    selftest();
    return 0;
}

/* Feed text in chunks of the given lengths, checking after each. */
static void feed_chunks(const unsigned char *text, size_t len,
                        const unsigned char *splits, size_t nsplits)
{
    ws_utf8_state st;
    size_t pos = 0, i = 0, checks = 0;
    int got = WS_UTF8_OK;

    ws_utf8_init(&st);
    while (pos < len) {
        size_t n = nsplits ? splits[i++ % nsplits] : len;

        n = n < len - pos ? n : len - pos;
        got = ws_utf8_feed(&st, text + pos, n);
        pos += n;
        if (checks++ < MAX_CHECKS || pos == len) {
            expect(got, reference(text, pos), "ws_utf8_feed", pos);
        }
        if (nsplits && i > len + nsplits) {
            /* all split lengths zero: finish in one chunk */
            nsplits = 0;
        }
    }
    expect(ws_utf8_feed(&st, text, 0), got, "ws_utf8_feed (empty)", pos);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t nsplits;
    int want;

    if (size == 0) {
        return 0;
    }
    nsplits = data[0] % MAX_SPLITS;
    if (size < 1 + nsplits) {
        nsplits = size - 1;
    }
    data++;
    size--;
    want = reference(data + nsplits, size - nsplits);
    expect(ws_utf8_valid(data + nsplits, size - nsplits) != 0,
           want == WS_UTF8_OK, "ws_utf8_valid", size - nsplits);
    feed_chunks(data + nsplits, size - nsplits, data, nsplits);
    return 0;
}
