/* Counted-string helpers. */
#include "core/str.c"

#include "tap.h"

static void test_compare(void)
{
    pt_str_t a = pt_string("Content-Length"), b = pt_string("content-length");
    pt_str_t c = pt_string("content-lengtx"), e = pt_null_string, e2 = { 0, "" };
    ok(!pt_str_eq(&a, &b), "eq is case-sensitive");
    ok(pt_str_caseeq(&a, &b), "caseeq");
    ok(!pt_str_caseeq(&a, &c), "caseeq differs");
    ok(pt_str_eq(&e, &e2), "empty strings equal, NULL data allowed");
    ok(pt_str_eq_lit(&e, ""), "eq_lit empty with NULL data");
    ok(pt_str_eq_lit(&b, "content-length") && !pt_str_eq_lit(&b, "content"), "eq_lit");
    ok(pt_str_caseeq_lit(&a, "CONTENT-LENGTH"), "caseeq_lit");
    ok(!pt_str_caseeq_lit(&a, "CONTENT-LENGTH2"), "caseeq_lit length");
    ok(pt_strncasecmp("ABC", "abd", 3) < 0 && pt_strncasecmp("abd", "ABC", 3) > 0
       && pt_strncasecmp("x", "y", 0) == 0, "strncasecmp sign");
    ok(pt_strncasecmp("\xc0", "\xe0", 1) != 0, "only ASCII letters fold");
    char low[8];
    pt_strlow(low, "AbC-1Z", 7);
    is_str(low, "abc-1z", "strlow");
    ok(pt_tolower('@') == '@' && pt_tolower('[') == '[' && pt_tolower('A') == 'a', "tolower edges");
}

static void test_numbers(void)
{
    is_int(pt_atoi64("0", 1), 0, "atoi 0");
    is_int(pt_atoi64("123456", 6), 123456, "atoi");
    is_int(pt_atoi64("9223372036854775807", 19), INT64_MAX, "atoi max");
    is_int(pt_atoi64("9223372036854775808", 19), -1, "atoi overflow");
    is_int(pt_atoi64("99999999999999999999", 20), -1, "atoi big overflow");
    is_int(pt_atoi64("", 0), -1, "atoi empty");
    is_int(pt_atoi64("12a", 3), -1, "atoi junk");
    is_int(pt_atoi64("-1", 2), -1, "atoi sign");
    is_int(pt_atoi64(" 1", 2), -1, "atoi space");
    is_int(pt_atoi64("123", 2), 12, "atoi honours len");
    is_int(pt_hextoi64("ff", 2), 255, "hex");
    is_int(pt_hextoi64("DeadBeef", 8), 0xdeadbeef, "hex mixed case");
    is_int(pt_hextoi64("7fffffffffffffff", 16), INT64_MAX, "hex max");
    is_int(pt_hextoi64("8000000000000000", 16), -1, "hex overflow");
    is_int(pt_hextoi64("0000000000000000001", 19), 1, "hex leading zeros");
    is_int(pt_hextoi64("g", 1), -1, "hex junk");
    is_int(pt_hextoi64("", 0), -1, "hex empty");
    is_int(pt_hextoi64("1;", 2), -1, "hex with extension char");
}

static void test_search_hash(void)
{
    const char *h = "GET /index.html HTTP/1.1";
    ok(pt_strnstr(h, strlen(h), "HTTP", 4) == h + 16, "strnstr found");
    ok(pt_strnstr(h, strlen(h), "HTTP/2", 6) == NULL, "strnstr absent");
    ok(pt_strnstr(h, 10, "html", 4) == NULL, "strnstr bounded by hlen");
    ok(pt_strnstr(h, 3, "", 0) == h, "empty needle");
    ok(pt_strnstr(NULL, 0, "a", 1) == NULL, "empty haystack");
    ok(pt_strnstr("aab", 3, "ab", 2) != NULL, "overlapping prefix");
    is_int(pt_hash("", 0), 2166136261u, "fnv offset basis");
    is_int(pt_hash("a", 1), 0xe40c292cu, "fnv-1a of a");
    ok(pt_hash_lower("Host", 4) == pt_hash("host", 4), "hash_lower folds");
    ok(pt_hash("Host", 4) != pt_hash("host", 4), "hash does not");
}

int main(void)
{
    subtest("compare", test_compare);
    subtest("numbers", test_numbers);
    subtest("search and hash", test_search_hash);
    return done_testing();
}
