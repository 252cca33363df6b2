/* catalog_internal.h: the built-in catalogue files, as
 * scripts/embed-providers.sh compiles them (build/gen/providers.c), and the
 * loader that takes them as arguments (so that tests and the fuzz target
 * can load a catalogue of their own). Not an interface outside
 * src/upstream/. */
#ifndef TK_CATALOG_INTERNAL_H
#define TK_CATALOG_INTERNAL_H

#include "upstream.h"

struct tk_embedded_provider {
    const char *file; /* base name, "bitrix24.json" */
    const char *text;
};
extern const struct tk_embedded_provider tk_embedded_providers[];
extern const int tk_embedded_providers_count;

tk_rc tk_catalog_load_from(const struct tk_embedded_provider *builtin, int nbuiltin,
                           const char *dir, struct tk_catalog **out, struct tk_err *e);

#endif
