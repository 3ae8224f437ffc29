/* HTTP/2 (placeholder while the real implementation lands). */
#include "h2_conn.h"
#include "h1_conn.h"
#include "../config/conf.h"

pt_module_t pt_http_v2_module = { .name = "http_v2" };

void pt_http2_init_connection(pt_conn_t *c)
{
    pt_conn_close(c);
}

void pt_http2_detect_connection(pt_conn_t *c)
{
    pt_http_init_connection(c);
}
