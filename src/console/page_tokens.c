/* page_tokens.c: STUB, replaced by its part of the console (issue 17). */
#include "console.h"
#include "pages.h"

void tk_h_console_tokens(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_tokens_create(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_tokens_revoke(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_tenants(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_tenants_create(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}
