/* The tokenizer alone: tokens, their lines, quoting and escapes, variables
 * bits, what ends a directive, and nginx's error messages with file:line. */
#include "tap.h"
#include "conf_test.h"
#include "config/lexer.h"

static t_ctx_t T;
static pt_conf_src_t S;
static const char *FILE_NAME = "/conf/test.conf";

static void lex_start(const char *text, int cmdline)
{
    t_setup(&T, NULL, 0);
    T.cf.args = pt_array_create(T.pool, 4, sizeof(pt_str_t));
    T.cf.arg_lines = pt_array_create(T.pool, 4, sizeof(unsigned));
    S.start = S.pos = text;
    S.end = text + strlen(text);
    S.line = 1;
    S.cmdline = cmdline ? 1 : 0;
    T.cf._src = &S;
    T.cf.file = cmdline ? NULL : FILE_NAME;
}

static void lex_end(void)
{
    t_teardown(&T);
}

/* Renders the current args as "a|b|c" (control characters as \t \n \r). */
static const char *joined(void)
{
    static char buf[1024];
    size_t o = 0;
    pt_str_t *a = T.cf.args->elts;
    buf[0] = '\0';
    for (size_t i = 0; i < T.cf.args->nelts; i++) {
        if (i)
            buf[o++] = '|';
        for (size_t j = 0; j < a[i].len && o < sizeof(buf) - 4; j++) {
            char c = a[i].data[j];
            if (c == '\t' || c == '\n' || c == '\r') {
                buf[o++] = '\\';
                buf[o++] = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
            } else {
                buf[o++] = c;
            }
        }
        buf[o] = '\0';
    }
    return buf;
}

static unsigned line_of(size_t i)
{
    return pt_array_at(T.cf.arg_lines, unsigned, i);
}

/* Reads one directive with stderr captured. */
static int next(void)
{
    t_capture_begin();
    int rc = pt__conf_read_token(&T.cf);
    t_capture_end();
    return rc;
}

static void test_basic(void)
{
    lex_start("worker_processes  4;\nevents {\n  worker_connections 1024;\n}\n", 0);
    is_int(next(), PT_TOKEN_END, "first directive ends with ;");
    is_str(joined(), "worker_processes|4", "tokens");
    is_int(T.cf.line, 1, "line 1");
    is_int(next(), PT_TOKEN_BLOCK_START, "block start");
    is_str(joined(), "events", "block name");
    is_int(T.cf.line, 2, "line 2");
    is_int(next(), PT_TOKEN_END, "inner directive");
    is_str(joined(), "worker_connections|1024", "inner tokens");
    is_int(T.cf.line, 3, "line 3");
    is_int(next(), PT_TOKEN_BLOCK_DONE, "block done");
    is_int(T.cf.args->nelts, 0, "no args at }");
    is_int(T.cf.line, 4, "} on line 4");
    is_int(next(), PT_TOKEN_EOF, "eof");
    is_str(t_errbuf, "", "no messages");
    lex_end();
}

static void test_lines(void)
{
    lex_start("\n\nlog_format main\n   'a'\n   \"b\";\r\nx;", 0);
    is_int(next(), PT_TOKEN_END, "multi-line directive");
    is_str(joined(), "log_format|main|a|b", "tokens");
    is_int(line_of(0), 3, "token 0 line");
    is_int(line_of(1), 3, "token 1 line");
    is_int(line_of(2), 4, "token 2 line");
    is_int(line_of(3), 5, "token 3 line");
    is_int(T.cf.line, 5, "directive reported at the line of its ';' (nginx)");
    is_int(next(), PT_TOKEN_END, "CRLF");
    is_int(T.cf.line, 6, "CR is a blank, LF counts");
    is_int(next(), PT_TOKEN_EOF, "eof");
    lex_end();
}

static void test_quotes_and_escapes(void)
{
    lex_start("a \"x y\" 'p q' \"\" '';\n"
              "b \"a\\\"b\" 'a\\'b' \"a\\\\b\" \"t\\tn\\nr\\r\" \"\\d+\\.x\";\n"
              "c a\\\"b a\\ b a\\;b;\n"
              "d \"{;}#\" '$x{';\n", 0);
    is_int(next(), PT_TOKEN_END, "quoted");
    is_str(joined(), "a|x y|p q||", "quoted tokens keep blanks; empty quotes give empty tokens");
    is_int(T.cf.args->nelts, 5, "5 tokens");
    is_int(next(), PT_TOKEN_END, "escapes");
    is_str(joined(), "b|a\"b|a'b|a\\b|t\\tn\\nr\\r|\\d+\\.x", "escapes resolved, others kept");
    is_int(next(), PT_TOKEN_END, "escapes unquoted");
    is_str(joined(), "c|a\"b|a\\ b|a\\;b", "backslash protects a blank or ; in a bare word (and stays)");
    is_int(next(), PT_TOKEN_END, "specials inside quotes");
    is_str(joined(), "d|{;}#|$x{", "specials are literal inside quotes");
    is_int(next(), PT_TOKEN_EOF, "eof");
    is_str(t_errbuf, "", "no messages");
    lex_end();
}

static void test_comments(void)
{
    lex_start("# full line ; {\na b; # trailing ; }\nc d#e;\n  #x\ne \"#\";#", 0);
    is_int(next(), PT_TOKEN_END, "directive after comment");
    is_str(joined(), "a|b", "comment skipped");
    is_int(T.cf.line, 2, "line");
    is_int(next(), PT_TOKEN_END, "# inside a word");
    is_str(joined(), "c|d#e", "# inside a word is literal");
    is_int(next(), PT_TOKEN_END, "quoted #");
    is_str(joined(), "e|#", "quoted #");
    is_int(next(), PT_TOKEN_EOF, "comment at eof");
    lex_end();
}

static void test_variables(void)
{
    lex_start("set $a ${b}c 'lit$x' \"q$y\" plain;\n", 0);
    is_int(next(), PT_TOKEN_END, "variables");
    is_str(joined(), "set|$a|${b}c|lit$x|q$y|plain", "variables kept verbatim");
    is_int(T.cf.args_have_vars, (1 << 1) | (1 << 2) | (1 << 4),
           "bits for $ outside single quotes");
    lex_end();

    lex_start("x ${a}{\n", 0);
    is_int(next(), PT_TOKEN_BLOCK_START, "${a} then { opens a block");
    is_str(joined(), "x|${a}", "tokens");
    lex_end();

    lex_start("a; b;", 0);
    T.cf.args_have_vars = 0xff;
    next();
    is_int(T.cf.args_have_vars, 0, "bits reset per directive");
    lex_end();
}

static void test_if_parens(void)
{
    lex_start("if ($a = \"b\") { x; }", 0);
    is_int(next(), PT_TOKEN_BLOCK_START, "if block");
    is_str(joined(), "if|($a|=|b|)", "\")\" after a quote is a token of its own");
    lex_end();
}

static void test_quote_terminators(void)
{
    lex_start("a \"b\";c 'd'{ }", 0);
    is_int(next(), PT_TOKEN_END, "quote then ;");
    is_str(joined(), "a|b", "tokens");
    is_int(next(), PT_TOKEN_BLOCK_START, "quote then {");
    is_str(joined(), "c|d", "tokens");
    is_int(next(), PT_TOKEN_BLOCK_DONE, "}");
    lex_end();
}

/* Each case: text, expected message (without the location), line. */
static void test_errors(void)
{
    static const struct {
        const char *text, *msg;
        unsigned line;
    } cases[] = {
        { "a \"b\"c;", "unexpected \"c\"", 1 },
        { "a\n'b'#;", "unexpected \"#\"", 2 },
        { "a \"b\"}", "unexpected \"}\"", 1 },
        { "\"a\"\x01;", "unexpected \"\\x01\"", 1 },
        { ";", "unexpected \";\"", 1 },
        { "\n {", "unexpected \"{\"", 2 },
        { "a b }", "unexpected \"}\"", 1 },
        { "a b", "unexpected end of file, expecting \";\" or \"}\"", 1 },
        { "a b\n\n", "unexpected end of file, expecting \";\" or \"}\"", 3 },
        { "a \"b;\n", "unexpected end of file, expecting \";\" or \"}\"", 2 },
        { "a", "unexpected end of file, expecting \";\" or \"}\"", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lex_start(cases[i].text, 0);
        int rc;
        t_capture_begin();
        while ((rc = pt__conf_read_token(&T.cf)) == PT_TOKEN_END)
            ;
        t_capture_end();
        char want[512];
        snprintf(want, sizeof(want), "portico: [emerg] %s in %s:%u\n", cases[i].msg, FILE_NAME,
                 cases[i].line);
        ok(rc == PT_TOKEN_ERROR, "error for case %zu", i);
        is_str(t_errbuf, want, cases[i].msg);
        lex_end();
    }

    lex_start("daemon off; pid x", 1);
    is_int(next(), PT_TOKEN_END, "-g first directive");
    is_int(next(), PT_TOKEN_ERROR, "-g unterminated");
    is_str(t_errbuf, "portico: [emerg] unexpected end of parameter, expecting \";\" in command line\n",
           "-g end of parameter message");
    lex_end();
}

static void test_nul_and_long(void)
{
    /* a long token and bytes >= 0x80 pass through untouched */
    static char big[20000];
    memset(big, 'x', sizeof(big) - 3);
    big[sizeof(big) - 3] = ';';
    big[sizeof(big) - 2] = '\0';
    lex_start(big, 0);
    is_int(next(), PT_TOKEN_END, "long token");
    is_int(((pt_str_t *) T.cf.args->elts)[0].len, sizeof(big) - 3, "whole length");
    lex_end();

    lex_start("caf\xc3\xa9 \xff;", 0);
    is_int(next(), PT_TOKEN_END, "utf-8 bytes");
    is_str(joined(), "caf\xc3\xa9|\xff", "kept");
    lex_end();
}

/* The compiled-in texts tokenize cleanly. */
static void test_builtin_texts(void)
{
    const char *texts[] = { pt_default_conf, pt_default_mime_types };
    for (int i = 0; i < 2; i++) {
        lex_start(texts[i], 0);
        int rc, n = 0;
        t_capture_begin();
        while ((rc = pt__conf_read_token(&T.cf)) != PT_TOKEN_EOF && rc != PT_TOKEN_ERROR)
            n++;
        t_capture_end();
        ok(rc == PT_TOKEN_EOF && n > 5, "built-in text %d: %d directives", i, n);
        is_str(t_errbuf, "", "no messages");
        lex_end();
    }
}

int main(void)
{
    t_make_dir();
    subtest("basic", test_basic);
    subtest("lines", test_lines);
    subtest("quotes and escapes", test_quotes_and_escapes);
    subtest("comments", test_comments);
    subtest("variables", test_variables);
    subtest("if parens", test_if_parens);
    subtest("quote terminators", test_quote_terminators);
    subtest("errors", test_errors);
    subtest("long and 8-bit", test_nul_and_long);
    subtest("built-in texts", test_builtin_texts);
    t_remove_dir();
    return done_testing();
}
