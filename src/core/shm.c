/* Shared-memory zones: anonymous shared mappings made by the master before
 * it forks, so every worker sees them at the same address and plain pointers
 * inside a zone are valid everywhere. */
#include "shm.h"

#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

static size_t mapped_size(size_t size)
{
    size_t page = (size_t) sysconf(_SC_PAGESIZE);
    if (size == 0 || size > SIZE_MAX - page)
        return 0;
    return (size + page - 1) & ~(page - 1);
}

int pt_shm_alloc(pt_shm_zone_t *zone)
{
    size_t size = mapped_size(zone->size);
    if (size == 0) {
        pt_log_error(PT_LOG_EMERG, NULL, 0, "zone \"%.*s\" has invalid size %zu",
                     (int) zone->name.len, zone->name.data, zone->size);
        return -1;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        pt_log_error(PT_LOG_ALERT, NULL, errno, "mmap(MAP_ANONYMOUS|MAP_SHARED, %zu) failed",
                     size);
        return -1;
    }
    pt_slab_pool_t *pool = p;
    if (pt_slab_init(pool, size) != 0) {
        pt_log_error(PT_LOG_EMERG, NULL, 0, "zone \"%.*s\" is too small",
                     (int) zone->name.len, zone->name.data);
        munmap(p, size);
        return -1;
    }
    snprintf(pool->log_ctx, sizeof(pool->log_ctx), " in zone \"%.*s\"",
             (int) zone->name.len, zone->name.data);
    zone->addr = p;
    return 0;
}

void pt_shm_free(pt_shm_zone_t *zone)
{
    if (zone->addr == NULL)
        return;
    if (munmap(zone->addr, mapped_size(zone->size)) != 0)
        pt_log_error(PT_LOG_ALERT, NULL, errno, "munmap(%p, %zu) failed", zone->addr,
                     zone->size);
    zone->addr = NULL;
}
