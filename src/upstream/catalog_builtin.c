/* catalog_builtin.c: tk_catalog_load over the files compiled into the
 * binary (kept apart from catalog.c so that the fuzz target links the
 * parser without the generated file). */
#include "catalog_internal.h"

tk_rc tk_catalog_load(const char *dir, struct tk_catalog **out, struct tk_err *e)
{
    return tk_catalog_load_from(tk_embedded_providers, tk_embedded_providers_count, dir, out, e);
}
