/* Variables and complex values. Every variable a config names is resolved at
 * config time to an index; "$scheme://$host$request_uri" is compiled once into
 * literal and variable segments and evaluated per request without re-parsing.
 *
 * Built-in variables are registered by the modules that own them
 * (preconfiguration); prefix families ($http_*, $sent_http_*, $cookie_*,
 * $arg_*, $upstream_http_*) are resolved by prefix. */
#ifndef PT_HTTP_VARIABLES_H
#define PT_HTTP_VARIABLES_H

#include "../config/conf.h"
#include "request.h"

typedef struct {
    pt_str_t value;
    unsigned valid:1;        /* computed for this request */
    unsigned not_found:1;    /* evaluates to "" and is "not set" for map/if */
    unsigned no_cacheable:1; /* recompute on every read */
} pt_http_var_value_t;

typedef struct pt_http_var_s pt_http_var_t;
/* Computes v for r; returns PT_OK or PT_ERROR (allocation failure). */
typedef int (*pt_http_var_get_cb)(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);
typedef void (*pt_http_var_set_cb)(pt_http_request_t *r, pt_http_var_value_t *v, uintptr_t data);

#define PT_VAR_CHANGEABLE  0x01  /* `set` may assign it */
#define PT_VAR_NOCACHEABLE 0x02
#define PT_VAR_PREFIX      0x04  /* name is a prefix ("http_"): a member ($http_foo)
                                  * is defined on demand; its getter gets data =
                                  * (uintptr_t) (const pt_str_t *) suffix ("foo") */
#define PT_VAR_WEAK        0x08  /* a later pt_http_var_add may take it over
                                  * (the module then installs its own getter) */

struct pt_http_var_s {
    pt_str_t           name;
    pt_http_var_get_cb get;
    pt_http_var_set_cb set;
    uintptr_t          data;
    unsigned           flags;
    unsigned           index;
};

/* Config time. Names are case-insensitive (stored lowercased), as nginx.
 * add: defines a variable (module preconfiguration, map, set, named regex
 * captures); returns the record (the caller sets get/set/data on it right
 * away: the pointer is only valid until the next add/index) or NULL with
 * "the duplicate "x" variable" logged when either side is not CHANGEABLE.
 * Adding a name that the config already referenced fills that record in.
 * index: returns the index a config refers to ($name): built-in variables and
 * prefix-family members are defined on demand; other names may be defined
 * later in the configuration (map, set) and are checked by
 * pt_http_variables_init. -1 only on allocation failure. */
pt_http_var_t *pt_http_var_add(pt_conf_t *cf, const pt_str_t *name, unsigned flags);
int            pt_http_var_index(pt_conf_t *cf, const pt_str_t *name);
/* Called once the whole http { } is parsed (idempotent): every referenced
 * name must be defined, else "unknown "x" variable" and -1. Defined variables
 * left without a getter (set, named captures) evaluate as not found. */
int            pt_http_variables_init(pt_conf_t *cf);

/* Request time. Returns the value (never NULL except on allocation failure or
 * a bad index); not_found values have an empty string. Cached in r->variables
 * unless the value is no_cacheable (then computed again on every call). */
pt_http_var_value_t *pt_http_var_get(pt_http_request_t *r, unsigned index);
/* By name (lowercase or not), for names not known at config time; NULL when
 * the name is unknown. */
pt_http_var_value_t *pt_http_var_get_by_name(pt_http_request_t *r, const pt_str_t *name);
/* Assigns a value (`set`, named captures): calls the variable's set handler
 * when it has one ($args, $limit_rate), else stores the value in the request
 * cache. value->data must live as long as the request. Returns 0 or -1. */
int pt_http_var_set(pt_http_request_t *r, unsigned index, const pt_str_t *value);

/* A compiled "complex value": literal text with $var, ${var} and $1..$9. */
typedef struct {
    pt_str_t  source;        /* as written */
    void     *segments;      /* private */
    unsigned  nsegments;
    unsigned  is_literal:1;  /* no variables: source is the value */
    unsigned  has_captures:1;/* refers to $1..$9 */
    unsigned  max_capture;   /* highest $N referred to */
} pt_http_cv_t;

/* Compiles src (a config token). Returns 0 or -1 with the error logged via
 * pt_conf_error ("unknown \"foo\" variable"). */
int pt_http_cv_compile(pt_conf_t *cf, const pt_str_t *src, pt_http_cv_t *cv);
/* Evaluates into r->pool (or points at the literal). Returns 0 or -1. */
int pt_http_cv_eval(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out);
/* The same, with the text of $1..$9 escaped for a query string (space # % & +
 * ; ? and non-printable bytes as %XX): what nginx's rewrite does to captures
 * put into args or a redirect when the request URI itself had escapes. */
int pt_http_cv_eval_escape_captures(pt_http_request_t *r, const pt_http_cv_t *cv, pt_str_t *out);

/* Regexes (PCRE2, JIT when available), compiled at config time; named
 * captures become variables. */
typedef struct {
    void     *code;          /* pcre2_code* */
    unsigned  ncaptures;     /* capture groups */
    pt_str_t  pattern;
    int      *name_index;    /* NULL when no named groups; else ncaptures + 1
                              * entries indexed by group number: the variable
                              * index of a named group, -1 for unnamed ones */
} pt_http_regex_t;

/* Compiles pattern (caseless when flag set). Returns 0 or -1 (logged with the
 * PCRE2 message and offset, like nginx). */
int pt_http_regex_compile(pt_conf_t *cf, pt_http_regex_t *re, const pt_str_t *pattern, int caseless);
/* Matches s; on match stores captures in r (when r != NULL: r->captures,
 * r->ncaptures pairs, r->captures_data = s->data, so s must live as long as
 * the captures are used; named groups set their variables) and returns 1;
 * 0 when no match; -1 on error. The match data is per process and reused. */
int pt_http_regex_exec(pt_http_request_t *r, const pt_http_regex_t *re, const pt_str_t *s);

/* Time helpers for variables that print durations: "%lld.%03lld". */
size_t pt_http_var_msec_text(char *buf, int64_t ms);

#endif
