/* page_oauth.c: STUB, replaced by its part of the console (issue 17). */
#include "console.h"
#include "pages.h"

void tk_h_console_oauth_clients(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_oauth_client(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_oauth_flows(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_oauth_flow(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}
