/* Licensed under the Apache License, Version 2.0.
 *
 * test_handshake.c: unit tests for ws_handshake.c.
 */

#include <apr_general.h>

#include "ws_engine.h"
#include "t/unit/unit.h"

/* The key's value, or -1 (and the error in *why) when it is refused. */
static long long key_value(const char *key, const char **why)
{
    apr_uint32_t value = 12345;

    *why = ws_hixie76_key_value(key, &value);
    return *why ? -1 : (long long)value;
}

static void check_hixie76(const char *key1, const char *key2,
                          const char *key3, const char *want, int line)
{
    apr_uint32_t n1 = 0, n2 = 0;
    unsigned char answer[16];

    unit_check(ws_hixie76_key_value(key1, &n1) == NULL
               && ws_hixie76_key_value(key2, &n2) == NULL,
               __FILE__, line, "keys accepted");
    ws_hixie76_answer(n1, n2, (const unsigned char *)key3, answer);
    unit_check_mem(answer, 16, want, 16, __FILE__, line, "answer");
}

static void test_hixie76_examples(void)
{
    const char *why;

    /* draft-hixie-thewebsocketprotocol-76, section 1.3 */
    CHECK_INT(key_value("4 @1  46546xW%0l 1 5", &why), 829309203);
    CHECK_INT(key_value("12998 5 Y3 1  .P00", &why), 259970620);
    check_hixie76("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", "^n:ds[4U",
                  "8jKS'y:G*Co,Wxa-", __LINE__);
    /* the same draft, section 5.2 */
    check_hixie76("18x 6]8vM;54 *(5:  {   U1]8  z [  8",
                  "1_ tx7X d  <  nw  334J702) 7]o}` 0", "Tm[K T2u",
                  "fQJ,fN/4F4!~K~MH", __LINE__);
}

static void test_hixie76_bad_keys(void)
{
    const char *why;

    CHECK_INT(key_value(NULL, &why), -1);
    CHECK_INT(key_value("", &why), -1);
    CHECK_INT(key_value("12345", &why), -1);
    CHECK(strstr(why, "no spaces") != NULL);
    CHECK_INT(key_value("1\t2\t3", &why), -1);   /* tabs are not spaces */
    CHECK(strstr(why, "no spaces") != NULL);
    CHECK_INT(key_value(" a b ", &why), -1);
    CHECK(strstr(why, "no digits") != NULL);
    CHECK_INT(key_value("3  ", &why), -1);
    CHECK(strstr(why, "multiple") != NULL);
    CHECK_INT(key_value("1 0 0 1", &why), -1);   /* 1001 / 3 */
    CHECK(strstr(why, "multiple") != NULL);
    CHECK_INT(key_value("4294967296 ", &why), -1);
    CHECK(strstr(why, "4294967295") != NULL);
    /* 2^64 + 2: wraps to 2 in 64-bit arithmetic */
    CHECK_INT(key_value("18446744073709551618 ", &why), -1);
    CHECK(strstr(why, "4294967295") != NULL);
    CHECK_INT(key_value("99999999999999999999999999999999999999 9", &why),
              -1);
    CHECK(strstr(why, "4294967295") != NULL);
}

static void test_hixie76_edge_keys(void)
{
    const char *why;

    CHECK_INT(key_value("4294967295 ", &why), 4294967295LL);
    CHECK_INT(key_value("0 ", &why), 0);
    CHECK_INT(key_value("000000000000000000000000000000042 ", &why), 42);
    CHECK_INT(key_value("x1x2 x", &why), 12);
    CHECK_INT(key_value(" 1 2 ", &why), 4);
}

static void test_rfc6455_key(void)
{
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",       /* no padding */
        "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===",    /* 25 characters */
        "AAAAAAAAAAAAAAAAAAAA",         /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAA=",     /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAA",     /* 18 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBs=SBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZ!==",
        "dGhlIHNhbXBsZSBub25j ZQ==",
        "dGhlIHNhbXBsZSBub25jZ ==",
        " dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZ-==",     /* base64url alphabet */
        "dGhlIHNhbXBsZSBub25jZ_==",
        "dGhlIHNhbXBsZSBub25jZ\xC3==",
        "dGhlIHNhbXBsZSBub25jZ\n=="
    };
    apr_size_t i;
    char accept[29];

    CHECK(ws_rfc6455_check_key("dGhlIHNhbXBsZSBub25jZQ==") == NULL);
    CHECK(ws_rfc6455_check_key("AAAAAAAAAAAAAAAAAAAAAA==") == NULL);
    CHECK(ws_rfc6455_check_key("+/+/+/+/+/+/+/+/+/+/+w==") == NULL);
    CHECK(ws_rfc6455_check_key(NULL) != NULL);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!CHECK(ws_rfc6455_check_key(bad[i]) != NULL)) {
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        }
    }

    /* RFC 6455 section 1.3 */
    memset(accept, 'x', sizeof(accept));
    ws_rfc6455_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);
    CHECK_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_versions(void)
{
    CHECK(ws_rfc6455_version_ok("13"));
    CHECK(ws_rfc6455_version_ok("8"));
    CHECK(ws_rfc6455_version_ok("7"));
    CHECK(ws_rfc6455_version_ok(" 13\t"));
    CHECK(ws_rfc6455_version_ok("\t8 "));
    CHECK(!ws_rfc6455_version_ok(NULL));
    CHECK(!ws_rfc6455_version_ok(""));
    CHECK(!ws_rfc6455_version_ok("  "));
    CHECK(!ws_rfc6455_version_ok("14"));
    CHECK(!ws_rfc6455_version_ok("013"));
    CHECK(!ws_rfc6455_version_ok("1 3"));
    CHECK(!ws_rfc6455_version_ok("13,8"));
    CHECK(!ws_rfc6455_version_ok("1"));
    CHECK(!ws_rfc6455_version_ok("0"));
    CHECK(!ws_rfc6455_version_ok("6"));
}

static void test_token_lists(apr_pool_t *p)
{
    apr_array_header_t *a;

    CHECK(ws_token_list_has("keep-alive, Upgrade", "upgrade"));
    CHECK(ws_token_list_has("Upgrade", "Upgrade"));
    CHECK(ws_token_list_has(" ,\tUPGRADE\t, ", "upgrade"));
    CHECK(!ws_token_list_has("keep-alive, Upgrade2", "upgrade"));
    CHECK(!ws_token_list_has("Upgrad", "upgrade"));
    CHECK(!ws_token_list_has("", "upgrade"));
    CHECK(!ws_token_list_has(NULL, "upgrade"));
    CHECK(!ws_token_list_has("keep alive", "alive"));

    a = ws_token_list_split(p, "chat, super chat ,,\t, x ");
    CHECK_INT(a->nelts, 3);
    CHECK_STR(APR_ARRAY_IDX(a, 0, const char *), "chat");
    CHECK_STR(APR_ARRAY_IDX(a, 1, const char *), "super chat");
    CHECK_STR(APR_ARRAY_IDX(a, 2, const char *), "x");
    CHECK_INT(ws_token_list_split(p, NULL)->nelts, 0);
    CHECK_INT(ws_token_list_split(p, " , ,")->nelts, 0);
    CHECK_INT(ws_token_list_split(p, "one")->nelts, 1);
}

static void test_detect_proto(void)
{
    CHECK_INT(ws_detect_proto("k", "13", NULL, NULL), WS_PROTO_RFC6455);
    CHECK_INT(ws_detect_proto(NULL, "13", NULL, NULL), WS_PROTO_RFC6455);
    CHECK_INT(ws_detect_proto("k", NULL, NULL, NULL), WS_PROTO_RFC6455);
    CHECK_INT(ws_detect_proto(NULL, NULL, "1 1", "2 2"), WS_PROTO_HIXIE76);
    CHECK_INT(ws_detect_proto(NULL, NULL, "1 1", NULL), WS_PROTO_HIXIE76);
    CHECK_INT(ws_detect_proto(NULL, NULL, NULL, "2 2"), WS_PROTO_HIXIE76);
    CHECK_INT(ws_detect_proto(NULL, NULL, NULL, NULL), WS_PROTO_HIXIE75);
}

int main(void)
{
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    test_hixie76_examples();
    test_hixie76_bad_keys();
    test_hixie76_edge_keys();
    test_rfc6455_key();
    test_versions();
    test_token_lists(p);
    test_detect_proto();
    apr_pool_destroy(p);
    apr_terminate();
    return UNIT_DONE();
}
