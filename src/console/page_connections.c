/* page_connections.c: STUB, replaced by its part of the console (issue 17). */
#include "console.h"
#include "pages.h"

void tk_h_console_connections(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_connection(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_connection_refresh(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}

void tk_h_console_connection_connect(struct tk_req *r)
{
    tk_console_message(r, 501, "Not built yet", "This console page is not built yet.");
}
