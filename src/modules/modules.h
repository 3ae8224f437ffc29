#ifndef PT_MODULES_H
#define PT_MODULES_H

#include <stddef.h>
#include "../config/conf.h"

extern pt_module_t *pt_modules[];
extern const size_t pt_modules_n;

#endif
