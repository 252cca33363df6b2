/* page_clients.c: STUB, replaced by its part of the console (issue 17). */
#include "console.h"
#include "pages.h"

void tk_h_console_clients(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_client(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_client_update(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_client_token_rotate(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_client_token_revoke(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_agents(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}
