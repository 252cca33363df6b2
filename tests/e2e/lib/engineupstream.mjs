// lib/engineupstream.mjs: a fake OAuth token endpoint for the refresh
// engine's tests (engine.test.mjs, bench/refresh.sh), made for many
// connections of one app: every connection has its own refresh token, and
// the endpoint keeps, per refresh token, how often it was presented and
// whether it was redeemed, so that a test can say "each connection was
// refreshed exactly once" and "no refresh token was used twice".
//
//   const up = await startEngineUpstream({ clientId, clientSecret });
//   up.url                             -> http://127.0.0.1:PORT/token
//   const rt = up.issue('conn-label')  -> a fresh refresh token for a connection
//   up.behave({ kind: 'ok' | 'status' | 'retry_after' | 'invalid_grant' | 'hang',
//               status, retryAfter, delayMs, expiresIn, rotate })
//   up.behaveFor(rt, {...})            -> a behaviour for one refresh token only
//   up.stats()                         -> {requests, redeemed, reused, pending, maxPending, presentedTwice}
//   startEngineUpstream({..., shared})  shared = {pending: 0, max: 0}: counted across upstreams
//
// Client authentication is client_secret_post (a wrong client: 401
// invalid_client). A refresh token that is unknown or already redeemed
// answers 400 invalid_grant (rotation with no grace) and counts as reused.
// 'hang' answers nothing until the client goes away; a request whose client
// goes away before the answer is not processed (nothing is redeemed), like
// a server that commits the rotation only with the answer. With quiet:
// true nothing is noted for the secret scan (the benchmark).
import http from 'node:http';
import { randomBytes } from 'node:crypto';

import { noteSecret } from './secrets.mjs';

export async function startEngineUpstream({ clientId, clientSecret, quiet = false, shared = null } = {}) {
  const tokens = new Map(); // refresh token -> {label, presented, redeemed, next}
  const special = new Map(); // refresh token -> behaviour
  let behaviour = { kind: 'ok', rotate: true, expiresIn: 3600 };
  let requests = 0;
  let redeemed = 0;
  let reused = 0;
  let pending = 0;
  let maxPending = 0;
  const hanging = new Set();

  const mk = (prefix) => {
    const t = `${prefix}-${randomBytes(15).toString('base64url')}`;
    if (!quiet) noteSecret(t, { kind: 'upstream' });
    return t;
  };
  if (!quiet && clientSecret) noteSecret(clientSecret, { kind: 'client_secret' });

  function send(res, status, body, headers = {}) {
    if (res.destroyed || res.writableEnded) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  server.keepAliveTimeout = 5000;

  async function handle(req, res, body) {
    requests++;
    const form = Object.fromEntries(new URLSearchParams(body));
    if (req.method !== 'POST' || !req.url.startsWith('/token')) return send(res, 404, { error: 'not_found' });
    if (form.client_id !== clientId || form.client_secret !== clientSecret) return send(res, 401, { error: 'invalid_client' });
    if (form.grant_type !== 'refresh_token') return send(res, 400, { error: 'unsupported_grant_type' });
    const rt = form.refresh_token;
    const st = tokens.get(rt);
    if (st) st.presented++;
    let b = special.get(rt) || behaviour;
    let gone = false;
    res.on('close', () => {
      if (!res.writableEnded) gone = true;
    });
    pending++;
    if (pending > maxPending) maxPending = pending;
    // shared: {pending, max} across several upstreams (a bound over all of them)
    if (shared) shared.max = Math.max(shared.max, ++shared.pending);
    try {
      if (b.kind === 'hang') {
        // until the client goes away, or the behaviour changes (then it is processed as told)
        await new Promise((resolve) => {
          hanging.add(resolve);
          res.on('close', resolve);
        });
        if (gone) return;
        b = special.get(rt) || behaviour;
      }
      if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
      if (gone) return; // the client went away: nothing processed
      if (b.kind === 'status') return send(res, b.status, b.body ?? { error: 'server_error' });
      if (b.kind === 'retry_after') return send(res, 429, { error: 'rate_limited' }, { 'retry-after': String(b.retryAfter) });
      if (b.kind === 'invalid_grant') return send(res, 400, { error: 'invalid_grant', error_description: 'revoked' });
      if (!st || st.redeemed) {
        reused++;
        return send(res, 400, { error: 'invalid_grant', error_description: 'unknown or already used refresh token' });
      }
      st.redeemed = true;
      redeemed++;
      const out = { access_token: mk('eat'), token_type: 'Bearer', expires_in: b.expiresIn ?? 3600 };
      if (b.rotate !== false) {
        const next = mk('ert');
        st.next = next;
        tokens.set(next, { label: st.label, presented: 0, redeemed: false, next: null });
        out.refresh_token = next;
      } else {
        st.redeemed = false; // not rotating: the same token stays valid
      }
      return send(res, 200, out);
    } finally {
      pending--;
      if (shared) shared.pending--;
    }
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}/token`,
    issue(label) {
      const t = mk('ert0');
      tokens.set(t, { label, presented: 0, redeemed: false, next: null });
      return t;
    },
    newAccessToken() {
      return mk('eat0');
    },
    behave(b) {
      behaviour = b;
      if (b.kind !== 'hang') {
        for (const r of hanging) r();
        hanging.clear();
      }
    },
    behaveFor(rt, b) {
      special.set(rt, b);
    },
    /** Requests per connection label (every refresh token the connection had). */
    presentedBy(label) {
      let n = 0;
      for (const st of tokens.values()) if (st.label === label) n += st.presented;
      return n;
    },
    stats() {
      let twice = 0;
      for (const st of tokens.values()) if (st.presented > 1) twice++;
      return { requests, redeemed, reused, pending, maxPending, presentedTwice: twice };
    },
    close() {
      for (const r of hanging) r();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
