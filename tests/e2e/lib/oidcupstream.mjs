// oidcupstream.mjs: a real OAuth 2.0 / OpenID Connect server (npm
// oidc-provider) on loopback, the upstream of the connect flow's tests.
//
// What it does, and why:
//   - two confidential clients for tokend, one client_secret_basic and one
//     client_secret_post, both with the redirect URI tokend gives
//     (<tokend>/connect/callback), grants authorization_code + refresh_token;
//   - authorization code with PKCE required (S256 only, the provider's
//     default), so a wrong or missing code_verifier is refused by the
//     provider itself;
//   - refresh tokens always issued (issueRefreshToken) and rotated on every
//     use (rotateRefreshToken true): an old refresh token is spent;
//   - no UI: devInteractions off; the interaction URL logs a test user in
//     at once (interactionFinished) and loadExistingGrant grants the
//     requested scopes, so no consent prompt is shown; with `deny` set the
//     interaction ends with error=access_denied instead;
//   - a short access token TTL (accessTtl seconds, default 60);
//   - every token answer is read on the way out: its tokens go to
//     onTokens (the tests noteSecret them for the secret scan) and are
//     counted in `issued`.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

/**
 * Start the provider. redirectUri: tokend's callback. Returns
 *   {issuer, authorizeUrl, tokenUrl, clients: {basic, post} ({id, secret}),
 *    issued: {access, refresh}, tokenRequests, deny, stop()}
 */
export async function startOidcUpstream({ redirectUri, accessTtl = 60, onTokens = () => {} } = {}) {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const rnd = () => crypto.randomBytes(24).toString('base64url');
  const clients = {
    basic: { id: `tokend-basic-${rnd().slice(0, 8)}`, secret: `oidc-basic-${rnd()}` },
    post: { id: `tokend-post-${rnd().slice(0, 8)}`, secret: `oidc-post-${rnd()}` },
  };
  const up = {
    issuer,
    authorizeUrl: `${issuer}/auth`,
    tokenUrl: `${issuer}/token`,
    clients,
    issued: { access: 0, refresh: 0 },
    tokenRequests: 0,
    deny: false,
    user: 'test-user',
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clients.basic.id,
        client_secret: clients.basic.secret,
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
      {
        client_id: clients.post.id,
        client_secret: clients.post.secret,
        token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    ],
    cookies: { keys: [rnd(), rnd()] },
    // a signing key of its own (ID tokens), so it does not warn about the development one
    jwks: { keys: [crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })] },
    scopes: ['openid', 'offline_access', 'api', 'read'],
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // grant whatever was asked for: no consent prompt
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
      await grant.save();
      return grant;
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    pkce: { required: () => true },
    ttl: {
      AccessToken: accessTtl,
      AuthorizationCode: 120,
      RefreshToken: 14 * 86400,
      Grant: 14 * 86400,
      Interaction: 600,
      Session: 86400,
    },
  });
  // the provider's own warnings about a development setup are expected here
  provider.on('server_error', (_ctx, err) => console.error(`oidc-provider server_error: ${err.stack || err}`));
  const handler = provider.callback();

  server.on('request', async (req, res) => {
    try {
      if (req.url.startsWith('/interaction/')) {
        const result = up.deny
          ? { error: 'access_denied', error_description: 'the test user declined' }
          : { login: { accountId: up.user } };
        await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
        return;
      }
      if (req.url.startsWith('/token')) {
        up.tokenRequests++;
        // read the answer on its way out: its tokens are secrets to scan for
        const chunks = [];
        const write = res.write.bind(res);
        const end = res.end.bind(res);
        res.write = (c, ...a) => {
          if (c) chunks.push(Buffer.from(c));
          return write(c, ...a);
        };
        res.end = (c, ...a) => {
          if (c && typeof c !== 'function') chunks.push(Buffer.from(c));
          try {
            const j = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            if (j.access_token) up.issued.access++;
            if (j.refresh_token) up.issued.refresh++;
            if (j.access_token || j.refresh_token) onTokens(j);
          } catch {
            /* not JSON: an error page */
          }
          return end(c, ...a);
        };
      }
      handler(req, res);
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  up.provider = provider;
  up.stop = () =>
    new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    });
  return up;
}

/**
 * A browser without a UI: GET url and follow redirects (with a cookie jar)
 * until stop(location) says to stop at a Location (returned, not fetched),
 * or an answer that is not a redirect comes. Returns
 *   {stoppedAt: URL|null, status, headers, text, hops: [urls]}
 */
export async function browse(url, { stop = () => false, jar = new Map(), maxHops = 20 } = {}) {
  const hops = [];
  let u = new URL(url);
  for (let i = 0; i < maxHops; i++) {
    hops.push(u.href);
    const res = await new Promise((resolve, reject) => {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname + u.search,
          method: 'GET',
          headers: { connection: 'close', ...(cookie ? { cookie } : {}) },
          agent: false,
        },
        (r) => {
          const chunks = [];
          r.on('data', (c) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, text: Buffer.concat(chunks).toString('utf8') }));
          r.on('error', reject);
        },
      );
      req.setTimeout(30000, () => req.destroy(new Error(`GET ${u.href}: no answer in time`)));
      req.on('error', reject);
      req.end();
    });
    for (const sc of res.headers['set-cookie'] || []) {
      const [pair] = sc.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(sc) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    if (res.status >= 300 && res.status < 400 && res.headers.location) {
      const next = new URL(res.headers.location, u);
      if (stop(next)) return { stoppedAt: next, ...res, hops };
      u = next;
      continue;
    }
    return { stoppedAt: null, ...res, hops };
  }
  throw new Error(`more than ${maxHops} redirects from ${url}: ${hops.join(' -> ')}`);
}

/**
 * A proxy in front of the provider's token endpoint that rewrites the form
 * body with edit(params: URLSearchParams) before passing it on: to show that
 * the provider checks what tokend sends (a changed code_verifier is refused).
 */
export async function startTokenProxy(target, edit) {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      edit(params);
      const body = params.toString();
      const headers = { ...req.headers, host: t.host, 'content-length': Buffer.byteLength(body) };
      const p = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers, agent: false }, (pr) => {
        res.writeHead(pr.statusCode, pr.headers);
        pr.pipe(res);
      });
      p.on('error', (e) => {
        res.statusCode = 502;
        res.end(String(e));
      });
      p.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/token`,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
