/* Licensed under the Apache License, Version 2.0.
 *
 * ws_handshake.c: handshake arithmetic and header parsing for hixie-75,
 * hixie-76 and RFC 6455.  The crypto and base64 come from APR-util.
 */

#include <string.h>

#include <apr_base64.h>
#include <apr_lib.h>
#include <apr_md5.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include "ws_engine.h"

/* RFC 6455 section 1.3 */
#define WS_ACCEPT_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* An RFC 6455 key is 16 bytes: 22 base64 characters and "==". */
#define WS_KEY_CHARS 24
#define WS_KEY_BYTES 16

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

ws_proto_e ws_detect_proto(const char *key, const char *version,
                           const char *key1, const char *key2)
{
    if (key || version) {
        return WS_PROTO_RFC6455;
    }
    if (key1 || key2) {
        return WS_PROTO_HIXIE76;
    }
    return WS_PROTO_HIXIE75;
}

const char *ws_hixie76_key_value(const char *key, apr_uint32_t *value)
{
    apr_uint64_t number = 0;
    apr_uint32_t spaces = 0;
    int digits = 0, too_big = 0;
    const char *p;

    if (!key) {
        return "key missing";
    }
    for (p = key; *p; p++) {
        if (apr_isdigit(*p)) {
            digits = 1;
            number = number * 10 + (apr_uint64_t)(*p - '0');
            /* stop growing once over 2^32-1 so many digits cannot wrap */
            if (number > APR_UINT32_MAX) {
                too_big = 1;
                number = (apr_uint64_t)APR_UINT32_MAX + 1;
            }
        }
        else if (*p == ' ') {
            spaces++;
        }
    }
    if (!digits) {
        return "key has no digits";
    }
    if (!spaces) {
        return "key has no spaces";
    }
    if (too_big) {
        return "key number is over 4294967295";
    }
    if (number % spaces) {
        return "key number is not a multiple of its spaces";
    }
    *value = (apr_uint32_t)(number / spaces);
    return NULL;
}

static void put_be32(unsigned char *out, apr_uint32_t n)
{
    out[0] = (unsigned char)(n >> 24);
    out[1] = (unsigned char)(n >> 16);
    out[2] = (unsigned char)(n >> 8);
    out[3] = (unsigned char)n;
}

void ws_hixie76_answer(apr_uint32_t n1, apr_uint32_t n2,
                       const unsigned char key3[8],
                       unsigned char answer[16])
{
    unsigned char challenge[16];

    put_be32(challenge, n1);
    put_be32(challenge + 4, n2);
    memcpy(challenge + 8, key3, 8);
    apr_md5(answer, challenge, sizeof(challenge));
}

const char *ws_rfc6455_check_key(const char *key)
{
    char decoded[WS_KEY_CHARS];

    if (!key) {
        return "Sec-WebSocket-Key missing";
    }
    if (strlen(key) != WS_KEY_CHARS) {
        return "Sec-WebSocket-Key is not 24 characters long";
    }
    if (strcmp(key + WS_KEY_CHARS - 2, "==") != 0) {
        return "Sec-WebSocket-Key does not end in ==";
    }
    /* apr_base64_decode stops quietly at the first foreign character */
    if (strspn(key, base64_alphabet) != WS_KEY_CHARS - 2) {
        return "Sec-WebSocket-Key is not base64";
    }
    if (apr_base64_decode_len(key) > (int)sizeof(decoded)
        || apr_base64_decode(decoded, key) != WS_KEY_BYTES) {
        return "Sec-WebSocket-Key does not decode to 16 bytes";
    }
    return NULL;
}

void ws_rfc6455_accept(const char *key, char accept[29])
{
    apr_sha1_ctx_t sha1;
    unsigned char digest[APR_SHA1_DIGESTSIZE];

    apr_sha1_init(&sha1);
    apr_sha1_update(&sha1, key, (unsigned int)strlen(key));
    apr_sha1_update(&sha1, WS_ACCEPT_GUID, sizeof(WS_ACCEPT_GUID) - 1);
    apr_sha1_final(digest, &sha1);
    apr_base64_encode(accept, (const char *)digest, sizeof(digest));
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trim optional whitespace from [*start, *end). */
static void trim_ows(const char **start, const char **end)
{
    while (*start < *end && is_ows(**start)) {
        (*start)++;
    }
    while (*end > *start && is_ows((*end)[-1])) {
        (*end)--;
    }
}

int ws_rfc6455_version_ok(const char *version)
{
    static const char *const versions[] = { "13", "8", "7" };
    const char *start = version, *end;
    apr_size_t i;

    if (!version) {
        return 0;
    }
    end = version + strlen(version);
    trim_ows(&start, &end);
    for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        if ((apr_size_t)(end - start) == strlen(versions[i])
            && memcmp(start, versions[i], (apr_size_t)(end - start)) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Step *cursor past the next non-empty element of a comma-separated list
 * and return it trimmed (length in *len), or NULL at the end. */
static const char *next_element(const char **cursor, apr_size_t *len)
{
    while (**cursor) {
        const char *start = *cursor;
        const char *end = strchr(start, ',');

        if (!end) {
            end = start + strlen(start);
        }
        *cursor = *end ? end + 1 : end;
        trim_ows(&start, &end);
        if (end > start) {
            *len = (apr_size_t)(end - start);
            return start;
        }
    }
    return NULL;
}

static int same_token(const char *a, apr_size_t len, const char *token)
{
    apr_size_t i;

    if (strlen(token) != len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (apr_tolower(a[i]) != apr_tolower(token[i])) {
            return 0;
        }
    }
    return 1;
}

int ws_token_list_has(const char *list, const char *token)
{
    const char *element;
    apr_size_t len;

    if (!list) {
        return 0;
    }
    while ((element = next_element(&list, &len)) != NULL) {
        if (same_token(element, len, token)) {
            return 1;
        }
    }
    return 0;
}

apr_array_header_t *ws_token_list_split(apr_pool_t *p, const char *list)
{
    apr_array_header_t *elements = apr_array_make(p, 4, sizeof(const char *));
    const char *element;
    apr_size_t len;

    if (!list) {
        return elements;
    }
    while ((element = next_element(&list, &len)) != NULL) {
        APR_ARRAY_PUSH(elements, const char *) = apr_pstrmemdup(p, element,
                                                                len);
    }
    return elements;
}
