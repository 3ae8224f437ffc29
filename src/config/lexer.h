/* The configuration tokenizer (private to src/config/). It reads one
 * directive at a time from the text in cf->_src into cf->args, as nginx's
 * configuration language defines it:
 *   - tokens are separated by blanks (space, tab, CR, LF);
 *   - ";" ends a directive, "{" opens a block, "}" closes one;
 *   - "#" at the start of a token comments to the end of the line;
 *   - '...' and "..." quote; inside a token a backslash escapes the next
 *     character: \" \' \\ lose the backslash, \n \r \t become control
 *     characters, any other pair is kept as written (regexes need "\d");
 *   - "$var" and "${var}" stay verbatim in the token.
 * The lexer knows nothing of directives. */
#ifndef PT_CONFIG_LEXER_H
#define PT_CONFIG_LEXER_H

#include "conf.h"

/* What is being read: one file or string. Lives on the stack of the function
 * that parses the text; cf->_src points at the innermost one. */
typedef struct pt_conf_src_s {
    const char *start;
    const char *pos;
    const char *end;
    unsigned    line;       /* current line, from 1 */
    unsigned    cmdline:1;  /* -g text: "in command line", no blocks */
} pt_conf_src_t;

/* What pt__conf_read_token() found after the tokens now in cf->args. */
enum {
    PT_TOKEN_ERROR = -1,    /* message logged */
    PT_TOKEN_END = 0,       /* ";" */
    PT_TOKEN_BLOCK_START,   /* "{" */
    PT_TOKEN_BLOCK_DONE,    /* "}" (cf->args is empty) */
    PT_TOKEN_EOF            /* end of the text (cf->args is empty) */
};

/* Reads the next directive's tokens into cf->args (and their lines into
 * cf->arg_lines, their variable bits into cf->args_have_vars) and sets
 * cf->line to the current line. Tokens are allocated from cf->pool.
 * Returns a PT_TOKEN_* value. */
int pt__conf_read_token(pt_conf_t *cf);

/* pt_conf_error() without " in FILE:LINE": what nginx prints for work it does
 * after parsing, such as opening log files (parser.c, for setters.c). */
void pt__conf_log(pt_conf_t *cf, int level, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
