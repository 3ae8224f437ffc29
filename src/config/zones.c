/* Shared-memory zones as the configuration declares them. Only the record is
 * made here; the process layer maps every zone of the cycle before forking
 * (and keeps a zone of the same name and size across a reload). */
#include "conf.h"
#include "cycle.h"

#include <string.h>

pt_shm_zone_t *pt_shm_zone_add(pt_conf_t *cf, const pt_str_t *name, size_t size, void *tag)
{
    pt_shm_zone_t **tail = &cf->cycle->shm_zones;

    for (pt_shm_zone_t *z = cf->cycle->shm_zones; z; z = z->next) {
        tail = &z->next;
        if (!pt_str_eq(&z->name, name))
            continue;
        if (z->tag != tag) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "the shared memory zone \"%.*s\" is already declared for a different use",
                          (int) name->len, name->data);
            return NULL;
        }
        /* a zone may be referenced (size 0) before it is declared */
        if (z->size == 0)
            z->size = size;
        if (size && size != z->size) {
            pt_conf_error(cf, PT_LOG_EMERG, 0,
                          "the size %zu of shared memory zone \"%.*s\" conflicts with already declared size %zu",
                          size, (int) name->len, name->data, z->size);
            return NULL;
        }
        return z;
    }

    pt_shm_zone_t *z = pt_pcalloc(cf->pool, sizeof(*z));
    if (z == NULL || pt_pstrdup(cf->pool, &z->name, name) != 0) {
        pt_conf_error(cf, PT_LOG_EMERG, 0, "out of memory while adding zone \"%.*s\"",
                      (int) name->len, name->data);
        return NULL;
    }
    z->size = size;
    z->tag = tag;
    *tail = z;
    return z;
}
