/* libFuzzer target: the RESP reply parser of the limit_req Redis client.
 *
 * Properties checked on every input (an exact-size heap copy, so ASan
 * catches over-reads): the parser returns -1, -2 or a length within the
 * input; a reply of length n parses to n from exactly its n bytes; every
 * proper prefix of it is incomplete (-2), never an error or a shorter reply;
 * string values point inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modules/limit_req_redis.h"

static void check_value(const pt_redis_value_t *v, const char *buf, size_t len)
{
    if (v->type == PT_REDIS_STATUS || v->type == PT_REDIS_ERROR || v->type == PT_REDIS_BULK) {
        if (v->len && (v->str < buf || v->str + v->len > buf + len))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    pt_redis_reply_t rep;
    ssize_t n = pt_redis_parse(buf, size, &rep);
    if (n < -2 || n == 0 || n > (ssize_t) size)
        abort();
    if (n > 0) {
        check_value(&rep.v, buf, size);
        if (rep.nkept > PT_REDIS_MAX_ELEMS || rep.nkept > rep.nelem)
            abort();
        for (size_t i = 0; i < rep.nkept; i++)
            check_value(&rep.elem[i], buf, size);
        /* the reply alone, then its prefixes (a few, to stay fast) */
        char *exact = malloc((size_t) n);
        memcpy(exact, buf, (size_t) n);
        if (pt_redis_parse(exact, (size_t) n, &rep) != n)
            abort();
        size_t step = (size_t) n > 64 ? (size_t) n / 64 : 1;
        for (size_t i = 0; i < (size_t) n; i += step) {
            char *pre = malloc(i ? i : 1);
            memcpy(pre, buf, i);
            if (pt_redis_parse(pre, i, &rep) != -2)
                abort();
            free(pre);
        }
        free(exact);
    }
    free(buf);
    return 0;
}
