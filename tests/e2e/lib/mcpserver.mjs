// lib/mcpserver.mjs: a small MCP server (Streamable HTTP, stateless) that
// trusts tokend as its authorization server, as a product's own API would:
//
// - its resource URL is http://127.0.0.1:PORT/mcp;
// - GET /.well-known/oauth-protected-resource (and .../mcp, RFC 9728 §3.1)
//   answers {resource, authorization_servers: [tokend's issuer],
//   scopes_supported, bearer_methods_supported: ["header"]};
// - every /mcp request needs Authorization: Bearer <JWT>: verified with
//   jose's createRemoteJWKSet against tokend's jwks_uri (from its RFC 8414
//   metadata), typ at+jwt, iss = tokend's issuer, aud = this resource, exp,
//   and the scope; without it 401 with
//   WWW-Authenticate: Bearer resource_metadata="...", and 403
//   insufficient_scope when the scope is missing;
// - one tool, "whoami", answering the token's sub, client_id and scope.
//
// The test can make it refuse a token it accepted before (rejectToken(jti)),
// as a resource server does after a revocation it learned of, to drive the
// client's refresh path without waiting for the expiry.

import http from 'node:http';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/**
 * Start the server. opts: {issuer (tokend's URL), scope (needed; default
 * 'mcp:tools')}. Returns {url (the resource), port, metadataUrl, seen:
 * [{jti, sub, client_id, scope, kid}], refusals: [{reason}], rejectToken(jti),
 * stop()}.
 */
export async function startMcpServer({ issuer, scope = 'mcp:tools' } = {}) {
  const metaRes = await fetch(new URL('/.well-known/oauth-authorization-server', issuer));
  if (metaRes.status !== 200) throw new Error(`tokend metadata: ${metaRes.status} ${await metaRes.text()}`);
  const asMeta = await metaRes.json();
  if (asMeta.issuer !== issuer) throw new Error(`tokend metadata issuer ${asMeta.issuer} is not ${issuer}`);
  const jwks = createRemoteJWKSet(new URL(asMeta.jwks_uri), { cooldownDuration: 0 });

  const rejected = new Set();
  const seen = [];
  const refusals = [];
  const st = { url: null, metadataUrl: null };

  function unauthorized(res, status, error, description) {
    const parts = [`Bearer resource_metadata="${st.metadataUrl}"`];
    if (error) parts.push(`error="${error}"`);
    if (description) parts.push(`error_description="${description.replace(/["\\]/g, '')}"`);
    if (status === 403 || !error) parts.push(`scope="${scope}"`);
    refusals.push({ status, error: error || null, description: description || null });
    res.writeHead(status, { 'content-type': 'application/json', 'www-authenticate': parts.join(', ') });
    res.end(JSON.stringify({ error: error || 'unauthorized', error_description: description || 'a Bearer token is needed' }));
  }

  async function check(req, res) {
    const h = req.headers.authorization || '';
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(h);
    if (!m) {
      unauthorized(res, 401, null, null);
      return null;
    }
    let payload;
    let header;
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(m[1], jwks, {
        issuer,
        audience: st.url,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
      }));
    } catch (e) {
      unauthorized(res, 401, 'invalid_token', `${e.code || 'invalid'}: ${e.message}`);
      return null;
    }
    if (rejected.has(payload.jti)) {
      unauthorized(res, 401, 'invalid_token', 'the token was revoked');
      return null;
    }
    const scopes = String(payload.scope || '').split(' ');
    if (!scopes.includes(scope)) {
      unauthorized(res, 403, 'insufficient_scope', `the token lacks ${scope}`);
      return null;
    }
    seen.push({ jti: payload.jti, sub: payload.sub, client_id: payload.client_id, scope: payload.scope, kid: header.kid, exp: payload.exp });
    return {
      token: m[1],
      clientId: payload.client_id,
      scopes,
      expiresAt: payload.exp,
      resource: new URL(st.url),
      extra: { sub: payload.sub, jti: payload.jti },
    };
  }

  function protectedResourceMetadata() {
    return {
      resource: st.url,
      authorization_servers: [issuer],
      scopes_supported: [scope],
      bearer_methods_supported: ['header'],
      resource_name: 'tokend e2e MCP server',
    };
  }

  function mcpFor() {
    const server = new McpServer({ name: 'tokend-e2e-mcp', version: '1.0.0' });
    server.registerTool('whoami', { description: 'who the access token says the caller is' }, async (extra) => {
      const a = extra.authInfo;
      return {
        content: [{ type: 'text', text: JSON.stringify({ sub: a.extra.sub, client_id: a.clientId, scope: a.scopes.join(' ') }) }],
      };
    });
    return server;
  }

  const server = http.createServer(async (req, res) => {
    try {
      const u = new URL(req.url, st.url);
      if (req.method === 'GET' && (u.pathname === '/.well-known/oauth-protected-resource' || u.pathname === '/.well-known/oauth-protected-resource/mcp')) {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
        res.end(JSON.stringify(protectedResourceMetadata()));
        return;
      }
      if (u.pathname !== '/mcp') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"not_found"}');
        return;
      }
      const auth = await check(req, res);
      if (!auth) return;
      if (req.method !== 'POST') {
        // stateless: no server-to-client stream, no session to delete
        res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' });
        res.end('{"error":"method_not_allowed"}');
        return;
      }
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      req.auth = auth;
      const mcp = mcpFor();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        transport.close().catch(() => {});
        mcp.close().catch(() => {});
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'server_error', error_description: String(e && e.stack) }));
      }
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  st.url = `http://127.0.0.1:${port}/mcp`;
  st.metadataUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;
  return {
    url: st.url,
    port,
    metadataUrl: st.metadataUrl,
    asMetadata: asMeta,
    seen,
    refusals,
    rejectToken(jti) {
      rejected.add(jti);
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
