/* tokend admin console: the live parts only (every page works without
 * this script). No external code, no eval, no inline handlers: the CSP
 * allows scripts from this origin only. */
'use strict';
(function () {
  /* the events page's terminal: see page_events.c (filled in there) */
})();
