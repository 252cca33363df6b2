/* console_internal.h: what the console's core files share (not pages). */
#ifndef TK_CONSOLE_INTERNAL_H
#define TK_CONSOLE_INTERNAL_H

#include "console.h"

/* What the authenticate hook leaves on a console request (r->principal
 * points here; the principal comes first, so tk_api_principal reads it). */
struct console_auth {
    struct tk_principal p;
    char session_id[TK_UUID_LEN + 1];
    char csrf[TK_CONSOLE_CSRF_LEN + 1];
    struct tk_form *form; /* a POST's, parsed and checked */
};

#endif
