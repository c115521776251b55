/* Licensed under the Apache License, Version 2.0.
 *
 * fuzz_handshake.c: libFuzzer harness for the handshake helpers of both
 * families (ws_handshake.c).
 *
 * Input: byte 0 is a presence mask (bit i: header i is absent, i.e.
 * NULL); the rest is split at '\n' into up to 7 fields:
 *   0 Sec-WebSocket-Key1   1 Sec-WebSocket-Key2   2 Sec-WebSocket-Key
 *   3 Sec-WebSocket-Version   4 a header value list   5 a token
 *   6 the 8 key3 bytes of hixie-76 (zero padded)
 * Each field is copied into its own exactly sized heap buffer, so an
 * over-read is an ASan report.  A field may hold NUL bytes; the engine
 * then sees the string up to the first one, and so does the reference.
 *
 * Every function is checked against a reference written here from the
 * specifications, not from the engine's code:
 *   ws_detect_proto       the rule in ws_engine.h
 *   ws_hixie76_key_value  accepted iff digits, spaces, number < 2^32 and
 *                         spaces | number; then value * spaces == number
 *   ws_hixie76_answer     MD5 of a challenge built byte by byte here
 *   ws_rfc6455_check_key  accepted iff 24 chars: 22 of the base64
 *                         alphabet then "=="; then apr_base64_decode
 *                         gives 16 bytes (non-canonical final characters,
 *                         with non-zero pad bits, are accepted, as Node
 *                         ws and most servers do)
 *   ws_rfc6455_accept     28 base64 chars ending in one '=', decoding to
 *                         the SHA-1 of key + GUID
 *   ws_rfc6455_version_ok trimmed value is exactly 13, 8 or 7
 *   ws_token_list_split   split at ',' and trim SP/HT, drop empties
 *   ws_token_list_has     some element equals token, ASCII case folded
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_base64.h>
#include <apr_general.h>
#include <apr_md5.h>
#include <apr_sha1.h>

#include "ws_engine.h"

#define NFIELDS 7
#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static apr_pool_t *root;

static void fail(const char *what, const char *input)
{
    fprintf(stderr, "fuzz_handshake: %s (input \"%s\")\n", what,
            input ? input : "(null)");
    abort();
}

#define CHECK(cond, input) \
    do { if (!(cond)) fail(#cond, (input)); } while (0)

/* The worked examples of draft-hixie-thewebsocketprotocol-76 and RFC 6455
 * section 1.3, so that a harness that checks nothing is noticed. */
static void selftest(void)
{
    apr_uint32_t n1 = 0, n2 = 0;
    unsigned char answer[16];
    char accept[29];

    CHECK(ws_hixie76_key_value("18x 6]8vM;54 *(5:  {   U1]8  z [  8", &n1)
          == NULL && n1 == 155712099, "draft key1");
    CHECK(ws_hixie76_key_value("1_ tx7X d  <  nw  334J702) 7]o}` 0", &n2)
          == NULL && n2 == 173347027, "draft key2");
    ws_hixie76_answer(n1, n2, (const unsigned char *)"Tm[K T2u", answer);
    CHECK(memcmp(answer, "fQJ,fN/4F4!~K~MH", 16) == 0, "draft answer");
    CHECK(ws_rfc6455_check_key("dGhlIHNhbXBsZSBub25jZQ==") == NULL,
          "RFC key");
    ws_rfc6455_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);
    CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "RFC accept");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    apr_initialize();
    if (apr_pool_create(&root, NULL) != APR_SUCCESS) {
        abort();
    }
    selftest();
    return 0;
}

/* ------------------------------------------------------------------ */
/* hixie-76                                                            */

static void check_key_value(const char *key, apr_uint32_t *out, int *ok)
{
    apr_uint64_t number = 0, spaces = 0;
    int digits = 0, big = 0;
    apr_uint32_t value = 0xDEADBEEF;
    const char *err, *p;

    for (p = key; p && *p; p++) {
        if (*p >= '0' && *p <= '9') {
            digits = 1;
            number = number * 10 + (apr_uint64_t)(*p - '0');
            if (number > 0xFFFFFFFFu) {
                big = 1;
                number = 0;
            }
        }
        else if (*p == ' ') {
            spaces++;
        }
    }
    err = ws_hixie76_key_value(key, &value);
    *ok = key && digits && spaces && !big && number % spaces == 0;
    CHECK((err == NULL) == *ok, key);
    if (err) {
        CHECK(value == 0xDEADBEEF, key);
        return;
    }
    CHECK((apr_uint64_t)value * spaces == number, key);
    *out = value;
}

static void check_answer(apr_uint32_t n1, apr_uint32_t n2,
                         const unsigned char key3[8])
{
    unsigned char challenge[16], want[16], got[16];
    int i;

    for (i = 0; i < 4; i++) {
        challenge[i] = (unsigned char)(n1 >> (24 - 8 * i));
        challenge[4 + i] = (unsigned char)(n2 >> (24 - 8 * i));
    }
    memcpy(challenge + 8, key3, 8);
    apr_md5(want, challenge, sizeof(challenge));
    ws_hixie76_answer(n1, n2, key3, got);
    CHECK(memcmp(got, want, 16) == 0, "hixie76 answer");
}

/* ------------------------------------------------------------------ */
/* RFC 6455                                                            */

static int in_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static void check_accept(const char *key)
{
    char accept[40], decoded[40];
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha1;
    int i;

    memset(accept, 'X', sizeof(accept));
    ws_rfc6455_accept(key, accept);
    CHECK(accept[28] == '\0' && accept[29] == 'X', key);
    for (i = 0; i < 27; i++) {
        CHECK(in_alphabet(accept[i]), key);
    }
    CHECK(accept[27] == '=', key);
    CHECK(apr_base64_decode(decoded, accept) == APR_SHA1_DIGESTSIZE, key);
    apr_sha1_init(&sha1);
    apr_sha1_update_binary(&sha1, (const unsigned char *)key,
                           (unsigned int)strlen(key));
    apr_sha1_update_binary(&sha1, (const unsigned char *)GUID,
                           sizeof(GUID) - 1);
    apr_sha1_final(digest, &sha1);
    CHECK(memcmp(decoded, digest, sizeof(digest)) == 0, key);
}

static void check_key(const char *key)
{
    const char *err = ws_rfc6455_check_key(key);
    int ok = key && strlen(key) == 24 && strcmp(key + 22, "==") == 0;
    int i;

    for (i = 0; ok && i < 22; i++) {
        ok = in_alphabet(key[i]);
    }
    CHECK((err == NULL) == ok, key);
    if (ok) {
        char decoded[32];

        CHECK(apr_base64_decode_len(key) <= (int)sizeof(decoded), key);
        CHECK(apr_base64_decode(decoded, key) == 16, key);
    }
    if (key) {
        check_accept(key);
    }
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_version(const char *v)
{
    int want = 0;

    if (v) {
        size_t start = 0, end = strlen(v);

        while (start < end && is_ows(v[start])) {
            start++;
        }
        while (end > start && is_ows(v[end - 1])) {
            end--;
        }
        want = (end - start == 2 && memcmp(v + start, "13", 2) == 0)
            || (end - start == 1 && (v[start] == '8' || v[start] == '7'));
    }
    CHECK(!ws_rfc6455_version_ok(v) == !want, v);
}

/* ------------------------------------------------------------------ */
/* Header value lists                                                  */

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int same_ci(const char *a, size_t alen, const char *b)
{
    size_t i;

    if (strlen(b) != alen) {
        return 0;
    }
    for (i = 0; i < alen; i++) {
        if (ascii_lower((unsigned char)a[i])
            != ascii_lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

/* Compare ws_token_list_split and _has against a reference split. */
static void check_list(apr_pool_t *p, const char *list, const char *token)
{
    apr_array_header_t *got = ws_token_list_split(p, list);
    const char *cur = list;
    int n = 0, has = 0;

    while (cur && *cur) {
        const char *comma = strchr(cur, ',');
        size_t start = 0, end = comma ? (size_t)(comma - cur) : strlen(cur);

        while (start < end && is_ows(cur[start])) {
            start++;
        }
        while (end > start && is_ows(cur[end - 1])) {
            end--;
        }
        if (end > start) {
            const char *el;

            CHECK(n < got->nelts, list);
            el = APR_ARRAY_IDX(got, n, const char *);
            CHECK(strlen(el) == end - start, list);
            CHECK(memcmp(el, cur + start, end - start) == 0, list);
            has |= token && same_ci(cur + start, end - start, token);
            n++;
        }
        cur = comma ? comma + 1 : NULL;
    }
    CHECK(n == got->nelts, list);
    if (token) {
        CHECK(!ws_token_list_has(list, token) == !has, list);
    }
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

/* Split data at '\n' into NFIELDS heap strings (NULL when absent). */
static void split_fields(const uint8_t *data, size_t size, unsigned mask,
                         char *f[NFIELDS], size_t flen[NFIELDS])
{
    size_t pos = 0;
    int i;

    for (i = 0; i < NFIELDS; i++) {
        const uint8_t *nl = pos < size ? memchr(data + pos, '\n', size - pos)
                                       : NULL;
        size_t len = nl ? (size_t)(nl - data - pos)
                        : (pos < size ? size - pos : 0);

        f[i] = malloc(len + 1);
        if (!f[i]) {
            abort();
        }
        if (len) {
            memcpy(f[i], data + pos, len);
        }
        f[i][len] = '\0';
        flen[i] = len;
        pos += len + 1;
        if (mask & (1u << i)) {
            free(f[i]);
            f[i] = NULL;
        }
    }
}

static void check_detect(char *f[NFIELDS])
{
    ws_proto_e want = (f[2] || f[3]) ? WS_PROTO_RFC6455
                    : (f[0] || f[1]) ? WS_PROTO_HIXIE76
                    : WS_PROTO_HIXIE75;

    CHECK(ws_detect_proto(f[2], f[3], f[0], f[1]) == want, "detect");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[NFIELDS];
    size_t flen[NFIELDS];
    apr_uint32_t n1 = 0, n2 = 0;
    int ok1, ok2, i;
    apr_pool_t *p;

    if (size == 0) {
        return 0;
    }
    split_fields(data + 1, size - 1, data[0], f, flen);
    check_detect(f);
    check_key_value(f[0], &n1, &ok1);
    check_key_value(f[1], &n2, &ok2);
    if (ok1 && ok2) {
        unsigned char key3[8] = { 0 };

        if (f[6]) {
            memcpy(key3, f[6], flen[6] < 8 ? flen[6] : 8);
        }
        check_answer(n1, n2, key3);
    }
    for (i = 0; i < NFIELDS; i++) {
        check_key(f[i]);
        check_version(f[i]);
    }
    apr_pool_create(&p, root);
    check_list(p, f[4], f[5]);
    check_list(p, f[3], "13");
    check_list(p, f[4], "websocket");
    apr_pool_destroy(p);
    for (i = 0; i < NFIELDS; i++) {
        free(f[i]);
    }
    return 0;
}
