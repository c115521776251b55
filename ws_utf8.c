/* Licensed under the Apache License, Version 2.0.
 *
 * ws_utf8.c: incremental UTF-8 validation.
 *
 * The accepted sequences are those of Unicode Table 3-7 ("Well-Formed
 * UTF-8 Byte Sequences").  Only the byte right after the lead byte has a
 * range narrower than 80..BF, and that narrowing is what rules out
 * overlong forms, surrogates and code points above U+10FFFF; so the state
 * is just "continuation bytes still expected" plus the range allowed for
 * the next one, and a bad sequence is caught at its first bad byte.
 */

#include <string.h>

#include "ws_engine.h"

/* need value that marks a validator which has seen an invalid byte */
#define UTF8_DEAD ((unsigned int)-1)

/* Lead bytes of multi-byte sequences (Table 3-7).  C0, C1 and F5..FF
 * appear in no row, so they are invalid wherever they occur. */
static const struct utf8_lead {
    unsigned char first, last;  /* lead byte range */
    unsigned char need;         /* continuation bytes that follow */
    unsigned char lo, hi;       /* range of the first continuation */
} utf8_leads[] = {
    { 0xC2, 0xDF, 1, 0x80, 0xBF },
    { 0xE0, 0xE0, 2, 0xA0, 0xBF },  /* no overlong 3-byte forms */
    { 0xE1, 0xEC, 2, 0x80, 0xBF },
    { 0xED, 0xED, 2, 0x80, 0x9F },  /* no surrogates */
    { 0xEE, 0xEF, 2, 0x80, 0xBF },
    { 0xF0, 0xF0, 3, 0x90, 0xBF },  /* no overlong 4-byte forms */
    { 0xF1, 0xF3, 3, 0x80, 0xBF },
    { 0xF4, 0xF4, 3, 0x80, 0x8F }   /* nothing above U+10FFFF */
};

void ws_utf8_init(ws_utf8_state *st)
{
    st->need = 0;
    st->lo = 0x80;
    st->hi = 0xBF;
}

/* Skip a run of ASCII bytes, eight at a time where possible. */
static const unsigned char *skip_ascii(const unsigned char *p,
                                       const unsigned char *end)
{
    while (end - p >= 8) {
        apr_uint64_t word;

        memcpy(&word, p, sizeof(word));
        if (word & APR_UINT64_C(0x8080808080808080)) {
            break;
        }
        p += 8;
    }
    while (p < end && *p < 0x80) {
        p++;
    }
    return p;
}

/* Start a multi-byte sequence at lead byte c; zero if c cannot lead one. */
static int start_sequence(ws_utf8_state *st, unsigned char c)
{
    apr_size_t i;

    for (i = 0; i < sizeof(utf8_leads) / sizeof(utf8_leads[0]); i++) {
        if (c >= utf8_leads[i].first && c <= utf8_leads[i].last) {
            st->need = utf8_leads[i].need;
            st->lo = utf8_leads[i].lo;
            st->hi = utf8_leads[i].hi;
            return 1;
        }
    }
    return 0;
}

int ws_utf8_feed(ws_utf8_state *st, const unsigned char *data,
                 apr_size_t len)
{
    const unsigned char *p = data, *end = data + len;

    if (st->need == UTF8_DEAD) {
        return WS_UTF8_INVALID;
    }
    while (p < end) {
        if (st->need == 0) {
            p = skip_ascii(p, end);
            if (p < end && !start_sequence(st, *p++)) {
                st->need = UTF8_DEAD;
                return WS_UTF8_INVALID;
            }
        }
        else if (*p < st->lo || *p > st->hi) {
            st->need = UTF8_DEAD;
            return WS_UTF8_INVALID;
        }
        else {
            p++;
            st->need--;
            st->lo = 0x80;
            st->hi = 0xBF;
        }
    }
    return st->need ? WS_UTF8_PARTIAL : WS_UTF8_OK;
}

int ws_utf8_valid(const unsigned char *data, apr_size_t len)
{
    ws_utf8_state st;

    ws_utf8_init(&st);
    return ws_utf8_feed(&st, data, len) == WS_UTF8_OK;
}
