// lib/fakeupstream.mjs: a fault-injecting fake OAuth token endpoint for the
// connection tests. One node http server on 127.0.0.1; each provider app
// of a test gets its own endpoint /<name>/token with its own client,
// refresh token and behaviour:
//
//   const up = await startFakeUpstream();
//   const ep = up.endpoint('e1', { clientId, clientSecret, auth: 'post', refreshToken });
//   ep.url                        -> http://127.0.0.1:PORT/e1/token
//   ep.behave({ kind: 'ok', rotate: true, expiresIn: 3600 })
//   ep.requests                   -> [{method, path, query, headers, body, form}]
//
// The endpoint checks the request as a strict server would: the method
// (GET with query parameters for auth 'query-get', Bitrix24 style; POST
// with a form otherwise), the client authentication ('basic': HTTP Basic;
// 'post': client_id/client_secret in the form; 'query-get': in the query),
// grant_type=refresh_token and the refresh token: a wrong client answers
// 401 invalid_client; an unknown refresh token (an old one after a
// rotation: no grace) 400 invalid_grant. Behaviours:
//   ok            {rotate, expiresIn (null: absent), scope, delayMs, okExtraDelayMs (after
//                 the refresh token was checked and rotated, before the answer)}
//   status        {status, body, contentType}   e.g. 500
//   retry_after   {retryAfter}                  429 with Retry-After
//   html          an HTML 502-ish page with status 200
//   invalid_grant 400 {"error":"invalid_grant"}
//   expired_token 401 {"error":"expired_token"} (Bitrix24's refresh token expired)
//   huge          a 10 MiB JSON body
// Every token it hands out (and every client secret and refresh token it
// is given) is noted with noteSecret so that the suite's secret scan looks
// for it.
import http from 'node:http';
import { randomBytes } from 'node:crypto';

import { noteSecret } from './secrets.mjs';

function token(prefix) {
  const t = `${prefix}-${randomBytes(18).toString('base64url')}`;
  noteSecret(t, { kind: 'upstream' });
  return t;
}

export async function startFakeUpstream() {
  const endpoints = new Map();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  server.keepAliveTimeout = 1000;

  function send(res, status, body, headers = {}) {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function handle(req, res, body) {
    const u = new URL(req.url, 'http://x');
    const name = u.pathname.split('/')[1];
    const ep = endpoints.get(name);
    if (!ep || u.pathname !== `/${name}/token`) return send(res, 404, { error: 'not_found' });
    const form = Object.fromEntries(new URLSearchParams(body));
    const query = Object.fromEntries(u.searchParams);
    ep.requests.push({ method: req.method, path: u.pathname, query, headers: req.headers, body, form });
    const b = ep.behaviour;
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    switch (b.kind) {
      case 'status':
        return send(res, b.status, b.body ?? { error: 'server_error' }, b.contentType ? { 'content-type': b.contentType } : {});
      case 'retry_after':
        return send(res, 429, { error: 'rate_limited' }, { 'retry-after': String(b.retryAfter) });
      case 'html':
        return send(res, 200, '<html><body><h1>502 Bad Gateway</h1></body></html>', { 'content-type': 'text/html' });
      case 'invalid_grant':
        return send(res, 400, { error: 'invalid_grant', error_description: 'refresh token revoked' });
      case 'expired_token':
        return send(res, 401, { error: 'expired_token', error_description: 'The refresh token provided has expired.' });
      case 'huge':
        return send(res, 200, JSON.stringify({ access_token: 'x'.repeat(10 * 1024 * 1024) }));
      default:
        break;
    }
    // ok: a strict check of the request, then new tokens
    const params = ep.auth === 'query-get' ? query : form;
    if (ep.auth === 'query-get' && req.method !== 'GET') return send(res, 405, { error: 'invalid_request', error_description: 'GET expected' });
    if (ep.auth !== 'query-get' && req.method !== 'POST') return send(res, 405, { error: 'invalid_request', error_description: 'POST expected' });
    if (ep.auth !== 'query-get' && !String(req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded'))
      return send(res, 400, { error: 'invalid_request', error_description: 'form expected' });
    let id, secret;
    if (ep.auth === 'basic') {
      const m = /^Basic (.+)$/.exec(req.headers.authorization || '');
      if (m) [id, secret] = Buffer.from(m[1], 'base64').toString('utf8').split(':').map(decodeURIComponent);
    } else {
      id = params.client_id;
      secret = params.client_secret;
    }
    if (id !== ep.clientId || secret !== ep.clientSecret) return send(res, 401, { error: 'invalid_client' });
    if (params.grant_type !== 'refresh_token') return send(res, 400, { error: 'unsupported_grant_type' });
    if (params.refresh_token !== ep.refreshToken) return send(res, 400, { error: 'invalid_grant', error_description: 'unknown refresh token' });
    ep.refreshes++;
    const out = { access_token: token(`${name}-at`), token_type: 'Bearer' };
    if (b.expiresIn !== null) out.expires_in = b.expiresIn ?? 3600;
    if (b.rotate) {
      ep.refreshToken = token(`${name}-rt`);
      out.refresh_token = ep.refreshToken;
    }
    if (b.scope) out.scope = b.scope;
    ep.lastAccessToken = out.access_token;
    if (b.okExtraDelayMs) await new Promise((r) => setTimeout(r, b.okExtraDelayMs));
    return send(res, 200, out);
  }

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    endpoint(name, { clientId, clientSecret, auth = 'post', refreshToken }) {
      noteSecret(clientSecret, { kind: 'client_secret' });
      noteSecret(refreshToken, { kind: 'upstream' });
      const ep = {
        name,
        url: `http://127.0.0.1:${port}/${name}/token`,
        clientId,
        clientSecret,
        auth,
        refreshToken,
        refreshes: 0,
        requests: [],
        lastAccessToken: null,
        behaviour: { kind: 'ok', rotate: false },
        behave(b) {
          this.behaviour = b;
        },
      };
      endpoints.set(name, ep);
      return ep;
    },
    newToken: token,
    close() {
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
