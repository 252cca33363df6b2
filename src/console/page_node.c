/* page_node.c: STUB, replaced by its part of the console (issue 17). */
#include "console.h"
#include "pages.h"

void tk_h_console_node(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_unseal_page(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_unseal(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}
