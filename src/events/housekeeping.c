/* housekeeping.c: coalesced repeats, retention and the housekeeping
 * worker. See events.h. (Interface first; the bodies follow.) */
#include "events.h"

#include <stdlib.h>

tk_rc tk_event_emit_coalesced(struct tk_db *db, const struct tk_event *ev, const char *key,
                              int64_t window_ms, bool *coalesced, struct tk_err *e)
{
    (void)key;
    (void)window_ms;
    if (coalesced) *coalesced = false;
    return tk_event_emit(db, ev, e);
}

tk_rc tk_events_coalesce_flush(struct tk_db *db, bool force, struct tk_err *e)
{
    (void)db;
    (void)force;
    (void)e;
    return TK_OK;
}

tk_rc tk_events_prune(struct tk_db *db, const char *tenant_id, int64_t before_ms, int batch,
                      int64_t *deleted, struct tk_err *e)
{
    (void)db;
    (void)tenant_id;
    (void)before_ms;
    (void)batch;
    (void)e;
    if (deleted) *deleted = 0;
    return TK_OK;
}

struct tk_housekeeper {
    struct tk_store *store;
};

tk_rc tk_housekeeper_start(struct tk_store *s, const struct tk_housekeeper_opts *o,
                           struct tk_housekeeper **out, struct tk_err *e)
{
    (void)o;
    (void)e;
    struct tk_housekeeper *h = tk_calloc(1, sizeof *h);
    h->store = s;
    *out = h;
    return TK_OK;
}

void tk_housekeeper_stop(struct tk_housekeeper *h)
{
    free(h);
}

void tk_events_use_keyring(struct tk_keyring *k)
{
    (void)k;
}
