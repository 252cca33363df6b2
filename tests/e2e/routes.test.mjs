// routes.test.mjs: the route table's declarations, walked end to end. GET
// /v1/sys/routes lists every route with the principal kinds it accepts and
// the role it needs; each route is called with every principal this node
// can present -- none, a malformed token, a client token (not accepted by
// operator routes) and HTTP Basic (not supported yet), an operator token of each role in the default tenant, an
// admin of another tenant -- and answers 401, 403 or neither, as declared.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { backends, createTenant, request, startTokend, stopAndScan, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const NO_SUCH_ID = '0190a000-0000-7000-8000-000000000099';

/** Who may call a route of this role: [role, in the default tenant]. */
function allowed(role, who) {
  switch (role) {
    case 'any':
      return true;
    case 'write':
      return who.role === 'admin' || who.role === 'operator';
    case 'admin':
      return who.role === 'admin';
    case 'node_admin':
      return who.role === 'admin' && who.defaultTenant;
    default:
      throw new Error(`unknown role ${role}`);
  }
}

for (const backend of backends()) {
  describe(`route declarations (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let table;
    const principals = []; // operator tokens: {label, token, role, defaultTenant}

    before(async () => {
      // no failure budget: the walk makes many 401s from one address
      t = await startTokend({ backend, args: ['--auth-fail-limit', '0'] });
      principals.push({ label: 'admin (default tenant)', token: t.token, role: 'admin', defaultTenant: true });
      for (const role of ['operator', 'viewer']) {
        const r = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: uniqueId(role), role } });
        assert.equal(r.status, 201, r.text);
        principals.push({ label: `${role} (default tenant)`, token: r.json.token, role, defaultTenant: true });
      }
      const other = await createTenant(t);
      principals.push({ label: 'admin (another tenant)', token: other.token, role: 'admin', defaultTenant: false });
      const r = await request(t, '/v1/sys/routes', { token: t.token });
      assert.equal(r.status, 200, r.text);
      table = r.json.routes;
    });
    after(() => stopAndScan(t));

    it('GET /v1/sys/routes lists every route with its principals and role', () => {
      assert.ok(table.length > 10);
      for (const rt of table) {
        assert.deepEqual(Object.keys(rt).sort(), ['method', 'path', 'principals', 'role', 'sealed_ok']);
        if (rt.role === 'public') assert.deepEqual(rt.principals, [], `${rt.method} ${rt.path}`);
        else if (rt.principals.includes('client_token')) assert.deepEqual(rt.principals, ['client_token'], `${rt.method} ${rt.path}`);
        else if (rt.path.startsWith('/console/')) assert.deepEqual(rt.principals, ['session'], `${rt.method} ${rt.path}`);
        else assert.deepEqual(rt.principals, ['operator_token'], `${rt.method} ${rt.path}`);
      }
      const find = (m, p) => table.find((x) => x.method === m && x.path === p)?.role;
      assert.equal(find('GET', '/v1/events'), 'any');
      assert.equal(find('POST', '/v1/operator-tokens'), 'admin');
      assert.equal(find('POST', '/v1/tenants'), 'node_admin');
      assert.equal(find('POST', '/v1/sys/seal'), 'node_admin');
      assert.equal(find('GET', '/health'), 'public');
    });

    /** Call a route as declared in the listing, with the given Authorization. */
    function call(rt, auth) {
      const p = rt.path.replace(/\{[a-z_]+\}/g, NO_SUCH_ID);
      const opts = { method: rt.method, headers: {} };
      if (auth !== undefined) opts.auth = auth;
      return request(t, p, opts);
    }

    it('nobody, a malformed token, a client token and HTTP Basic get 401 on every authenticated route', async () => {
      const presented = [
        [undefined, 'missing'],
        ['Bearer tko_garbage', 'malformed'],
        ['Bearer tkc_0123456789abcdef0123456789abcdef', 'kind_not_accepted'],
        ['Basic Y2xpZW50OnNlY3JldA==', 'unsupported'],
      ];
      // routes of client tokens: clients.test.mjs
      for (const rt of table.filter((x) => x.role !== 'public' && x.principals.includes('operator_token'))) {
        for (const [auth, reason] of presented) {
          const r = await call(rt, auth);
          const what = `${rt.method} ${rt.path} with ${auth ?? 'no Authorization'}`;
          assert.equal(r.status, 401, `${what}: ${r.text}`);
          assert.equal(r.json.error, 'unauthenticated', what);
          assert.equal(r.json.reason, reason, what);
          assert.ok(r.headers['www-authenticate'], what);
          if (reason === 'unsupported' || reason === 'kind_not_accepted') assert.match(r.json.message, /this route accepts operator tokens/, what);
        }
      }
    });

    it('every console page of the session kind sends a request without a session to the sign-in page, an operator token included', async () => {
      const pages = table.filter((x) => x.principals.includes('session'));
      assert.ok(pages.length >= 10);
      for (const rt of pages) {
        for (const auth of [undefined, `Bearer ${t.token}`]) {
          const r = await call(rt, auth);
          const what = `${rt.method} ${rt.path} with ${auth ? 'an operator token' : 'nothing'}: ${r.status} ${r.text}`;
          assert.equal(r.status, 303, what);
          assert.match(r.headers.location, /^\/console\/login\?why=signin/, what);
        }
      }
    });

    it('operator tokens of each role get 403 or through as each route declares', async () => {
      for (const rt of table.filter((x) => x.role !== 'public' && x.principals.includes('operator_token'))) {
        for (const who of principals) {
          // sealing the node is left to the keyring suites (it ends this walk)
          if (rt.path === '/v1/sys/seal' && allowed(rt.role, who)) continue;
          // an allowed stream answers 200 and stays open (stream.test.mjs)
          if (rt.path === '/v1/events/stream' && allowed(rt.role, who)) continue;
          const r = await call(rt, `Bearer ${who.token}`);
          const what = `${rt.method} ${rt.path} (role ${rt.role}) as ${who.label}: ${r.status} ${r.text}`;
          if (allowed(rt.role, who)) {
            assert.ok(r.status !== 401 && r.status !== 403, what);
          } else {
            assert.equal(r.status, 403, what);
            assert.equal(r.json.error, 'forbidden', what);
            assert.match(r.json.message, /admin/, what);
          }
        }
      }
    });
  });
}
