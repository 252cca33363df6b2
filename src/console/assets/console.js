/* tokend admin console: the live parts only (every page works without
 * this script). No external code, no eval, no inline handlers: the CSP
 * allows scripts from this origin only. */
'use strict';
(function () {
  /* ---- the events page's live terminal (page_events.c) ----
   * #terminal holds the latest events rendered by the server, oldest first,
   * and in data-stream the URL of GET /console/events/stream with the
   * API's filter names and after= the seq of the newest one shown. New
   * events are appended as lines built with createElement/textContent only
   * (never markup from a value); at most MAX_LINES are kept. Pause buffers
   * up to MAX_BUFFER events (the newest) and Resume appends them.
   * EventSource reconnects by itself, sending Last-Event-ID (the stream's
   * id: lines are seqs), so nothing is lost or repeated across a reconnect. */
  var term = document.getElementById('terminal');
  if (!term || typeof window.EventSource !== 'function') return;

  var MAX_LINES = 500;
  var MAX_BUFFER = 500;
  /* mirrors tk_console_subject_href (core.c) */
  var SUBJECT_PATHS = {
    connection: '/console/connections/',
    client: '/console/clients/',
    agent: '/console/agents#',
    oauth_client: '/console/oauth/clients/',
    oauth_flow: '/console/oauth/flows/',
    operator_token: '/console/tokens#',
    tenant: '/console/tenants#'
  };
  var live = document.getElementById('live');
  var pauseBtn = document.getElementById('pause');
  var buffered = document.getElementById('buffered');
  var paused = false;
  var buffer = [];
  var dropped = 0;
  var lastSeq = Number(term.getAttribute('data-after')) || 0;
  var ended = false;

  function setLive(text) {
    if (live) live.textContent = text;
  }

  function showBuffered() {
    if (!buffered) return;
    var t = '';
    if (paused) {
      t = buffer.length + ' new event' + (buffer.length === 1 ? '' : 's') + ' held';
      if (dropped) t += ', ' + dropped + ' older dropped';
    }
    buffered.textContent = t;
  }

  function subjectHref(type, id) {
    if (!type || !id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) return '';
    if (!Object.prototype.hasOwnProperty.call(SUBJECT_PATHS, type)) return '';
    return SUBJECT_PATHS[type] + id;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function str(v) {
    return typeof v === 'string' ? v : '';
  }

  /* the same markup as render_line in page_events.c */
  function lineOf(ev) {
    var line = el('div', 'line');
    line.setAttribute('data-id', str(ev.id));
    line.setAttribute('data-seq', String(ev.seq));
    var t = el('span', 't');
    var at = str(ev.at);
    if (at.length >= 19) {
      var time = el('time', '', at.slice(0, 10) + ' ' + at.slice(11, 19) + ' UTC');
      time.setAttribute('datetime', at);
      t.appendChild(time);
    }
    line.appendChild(t);
    line.appendChild(document.createTextNode(' '));
    line.appendChild(el('span', 'k', str(ev.kind)));
    line.appendChild(document.createTextNode(' '));
    line.appendChild(el('span', 'a', str(ev.action)));
    line.appendChild(document.createTextNode(' '));
    var outcome = str(ev.outcome);
    line.appendChild(el('span', 'o o-' + outcome.replace(/[^a-z0-9_]/g, ''), outcome));
    var type = str(ev.subject_type);
    var sid = str(ev.subject_id);
    if (type || sid) {
      line.appendChild(document.createTextNode(' '));
      var href = subjectHref(type, sid);
      var s;
      if (href) {
        s = el('a', 's', type + ' ' + sid);
        s.setAttribute('href', href);
      } else {
        s = el('span', 's', type + ' ' + sid);
      }
      line.appendChild(s);
    }
    line.appendChild(document.createTextNode(' '));
    line.appendChild(el('span', 'm', str(ev.message)));
    return line;
  }

  function append(evs) {
    var empty = term.querySelector('.empty');
    if (empty) term.removeChild(empty);
    for (var i = 0; i < evs.length; i++) term.appendChild(lineOf(evs[i]));
    var lines = term.querySelectorAll('.line');
    for (var j = 0; j < lines.length - MAX_LINES; j++) term.removeChild(lines[j]);
    if (!paused) term.scrollTop = term.scrollHeight;
  }

  function onEvent(ev) {
    if (typeof ev.seq === 'number') {
      if (ev.seq <= lastSeq) return; /* shown already */
      lastSeq = ev.seq;
    }
    if (paused) {
      buffer.push(ev);
      if (buffer.length > MAX_BUFFER) {
        buffer.shift();
        dropped++;
      }
      showBuffered();
      return;
    }
    append([ev]);
  }

  function state() {
    if (ended) return;
    if (paused) setLive('paused');
    else setLive(es.readyState === 1 ? 'live' : 'reconnecting');
  }

  if (pauseBtn) {
    pauseBtn.hidden = false;
    pauseBtn.addEventListener('click', function () {
      paused = !paused;
      pauseBtn.textContent = paused ? 'Resume' : 'Pause';
      pauseBtn.setAttribute('aria-pressed', paused ? 'true' : 'false');
      if (!paused && buffer.length) {
        var held = buffer;
        buffer = [];
        append(held);
      }
      if (!paused) dropped = 0;
      showBuffered();
      state();
    });
  }

  term.scrollTop = term.scrollHeight;
  var url = term.getAttribute('data-stream') || '/console/events/stream';
  var es = new EventSource(url);
  es.addEventListener('open', state);
  es.addEventListener('message', function (m) {
    var ev;
    try {
      ev = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    if (ev && typeof ev === 'object') onEvent(ev);
  });
  es.addEventListener('end', function (m) {
    /* the server ended the stream: revoked, sealed, node_stopping */
    var reason = '';
    try {
      reason = str(JSON.parse(m.data).reason);
    } catch (e) {
      reason = '';
    }
    es.close();
    ended = true;
    setLive('ended' + (reason ? ' (' + reason + ')' : '') + ': reload the page');
  });
  es.addEventListener('error', function () {
    if (ended) return;
    if (es.readyState === 2) {
      /* refused (signed out, session ended): EventSource gives up */
      ended = true;
      setLive('disconnected: reload the page');
    } else if (!paused) {
      setLive('reconnecting');
    }
  });
  state();
})();
