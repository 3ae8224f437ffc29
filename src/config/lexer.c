/* The configuration tokenizer: a single pass over the text held in memory,
 * one character at a time, with a handful of state bits. Its error messages
 * and the places it raises them follow nginx, since users compare them. */
#include "lexer.h"

#include <string.h>

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Copies raw token text [p, end) into cf->pool, resolving escapes: \" \' \\
 * drop the backslash, \t \r \n become the control character, any other
 * backslash stays. The copy is NUL-terminated. Returns 0 or -1 (no memory). */
static int push_token(pt_conf_t *cf, const char *p, const char *end, unsigned line,
                      int single_quoted)
{
    char *dst = pt_pnalloc(cf->pool, (size_t) (end - p) + 1);
    if (dst == NULL)
        return -1;
    char *d = dst;
    int has_dollar = 0;

    while (p < end) {
        if (*p == '\\' && p + 1 < end) {
            char next = p[1];
            if (next == '"' || next == '\'' || next == '\\') {
                *d++ = next;
                p += 2;
                continue;
            }
            if (next == 't' || next == 'r' || next == 'n') {
                *d++ = next == 't' ? '\t' : next == 'r' ? '\r' : '\n';
                p += 2;
                continue;
            }
        }
        if (*p == '$')
            has_dollar = 1;
        *d++ = *p++;
    }
    *d = '\0';

    pt_str_t *tok = pt_array_push(cf->args);
    unsigned *ln = pt_array_push(cf->arg_lines);
    if (tok == NULL || ln == NULL)
        return -1;
    tok->data = dst;
    tok->len = (size_t) (d - dst);
    *ln = line;
    size_t i = cf->args->nelts - 1;
    if (has_dollar && !single_quoted && i < 64)
        cf->args_have_vars |= (uint64_t) 1 << i;
    return 0;
}

static int lex_error(pt_conf_t *cf, const char *msg)
{
    cf->line = cf->_src->line;
    pt_conf_error(cf, PT_LOG_EMERG, 0, "%s", msg);
    return PT_TOKEN_ERROR;
}

/* `unexpected "x"`, the character printed as it is, like nginx does; only a
 * control byte is shown as \xHH so that it cannot cut or garble the line. */
static int unexpected(pt_conf_t *cf, char ch)
{
    unsigned char c = (unsigned char) ch;
    cf->line = cf->_src->line;
    if (c < 0x20 || c == 0x7f)
        pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected \"\\x%02x\"", c);
    else
        pt_conf_error(cf, PT_LOG_EMERG, 0, "unexpected \"%c\"", ch);
    return PT_TOKEN_ERROR;
}

static int no_memory(pt_conf_t *cf)
{
    cf->line = cf->_src->line;
    pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while reading the configuration");
    return PT_TOKEN_ERROR;
}

int pt__conf_read_token(pt_conf_t *cf)
{
    pt_conf_src_t *src = cf->_src;
    const char *start = NULL;   /* first byte of the current token's text */
    unsigned start_line = 0;
    int between = 1;            /* between tokens (nginx: last_space) */
    int need_blank = 0;         /* a quote just closed: a separator must follow */
    int comment = 0;
    int escaped = 0;            /* previous character was a backslash */
    int dquoted = 0, squoted = 0;
    int dollar = 0;             /* previous character was '$' ("${" stays in the token) */

    if (cf->args == NULL || cf->arg_lines == NULL)
        return no_memory(cf);
    cf->args->nelts = 0;
    cf->arg_lines->nelts = 0;
    cf->args_have_vars = 0;

    for (;;) {
        if (src->pos >= src->end) {
            cf->line = src->line;
            if (cf->args->nelts > 0 || !between) {
                if (src->cmdline)
                    return lex_error(cf, "unexpected end of parameter, expecting \";\"");
                return lex_error(cf, "unexpected end of file, expecting \";\" or \"}\"");
            }
            return PT_TOKEN_EOF;
        }

        char ch = *src->pos++;

        if (ch == '\n') {
            src->line++;
            comment = 0;
        }
        if (comment)
            continue;
        if (escaped) {
            escaped = 0;
            continue;
        }

        if (need_blank) {
            if (is_blank(ch)) {
                need_blank = 0;
                between = 1;
                continue;
            }
            cf->line = src->line;
            if (ch == ';')
                return PT_TOKEN_END;
            if (ch == '{')
                return PT_TOKEN_BLOCK_START;
            if (ch != ')')
                return unexpected(cf, ch);
            /* `if ($a = "b")`: the ")" is a token of its own */
            need_blank = 0;
            between = 1;
        }

        if (between) {
            if (is_blank(ch))
                continue;
            start = src->pos - 1;
            start_line = src->line;
            switch (ch) {
            case ';':
            case '{':
                if (cf->args->nelts == 0)
                    return unexpected(cf, ch);
                cf->line = src->line;
                return ch == '{' ? PT_TOKEN_BLOCK_START : PT_TOKEN_END;
            case '}':
                if (cf->args->nelts != 0)
                    return unexpected(cf, '}');
                cf->line = src->line;
                return PT_TOKEN_BLOCK_DONE;
            case '#':
                comment = 1;
                continue;
            case '\\':
                escaped = 1;
                between = 0;
                continue;
            case '"':
                start++;
                dquoted = 1;
                between = 0;
                continue;
            case '\'':
                start++;
                squoted = 1;
                between = 0;
                continue;
            case '$':
                dollar = 1;
                between = 0;
                continue;
            default:
                between = 0;
                continue;
            }
        }

        /* inside a token */
        if (ch == '{' && dollar)
            continue;
        dollar = 0;
        if (ch == '\\') {
            escaped = 1;
            continue;
        }
        if (ch == '$') {
            dollar = 1;
            continue;
        }

        int done = 0, was_squoted = squoted;
        if (dquoted) {
            if (ch == '"') {
                dquoted = 0;
                need_blank = 1;
                done = 1;
            }
        } else if (squoted) {
            if (ch == '\'') {
                squoted = 0;
                need_blank = 1;
                done = 1;
            }
        } else if (is_blank(ch) || ch == ';' || ch == '{') {
            between = 1;
            done = 1;
        }
        if (!done)
            continue;

        if (push_token(cf, start, src->pos - 1, start_line, was_squoted) != 0)
            return no_memory(cf);

        if (!need_blank) {
            if (ch == ';') {
                cf->line = src->line;
                return PT_TOKEN_END;
            }
            if (ch == '{') {
                cf->line = src->line;
                return PT_TOKEN_BLOCK_START;
            }
        }
    }
}
