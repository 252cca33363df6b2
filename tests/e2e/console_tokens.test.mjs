// The console's operator tokens and tenants pages (issue 17): issue a token
// through form#token-create and see it once (p#new-token), then only its
// preview; revoke through form.revoke and find it refused on /v1/whoami;
// revoking the session's own token ends the session; a viewer sees no form
// and its POSTs are 403; tenants for node admins only, a new tenant's first
// admin token shown once; a token name with markup is shown as text.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, createTenant, request, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { noteSecret } from './lib/secrets.mjs';
import { byId, consoleSignIn, textOf } from './lib/console.mjs';

/** SQL on the node's store behind its back (SQLite: waiting for its lock). */
const sql = (t, s) => storeSql(t, (t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; ') + s);
const XSS = '<img src=x onerror=alert(1)>';
const ISSUED = /tko_[0-9A-Za-z]{36}/;

/** The <tr data-id="id" ...>...</tr> of a page, or null. */
function rowOf(html, id) {
  const m = new RegExp(`<tr id="${id}" data-id="${id}"[^>]*>([\\s\\S]*?)</tr>`).exec(html);
  return m ? m[0] : null;
}
function dataIds(html, tableId) {
  const table = byId(html, tableId);
  return table ? [...table.matchAll(/<tr [^>]*data-id="([^"]+)"/g)].map((m) => m[1]) : [];
}
/** The token in p#new-token of a page (noted for the secret scan). */
function newToken(html, tenantId = null) {
  const p = byId(html, 'new-token');
  assert.ok(p, 'p#new-token');
  assert.match(p, /^<p class="secret" id="new-token">/);
  const tok = ISSUED.exec(p)?.[0];
  assert.ok(tok, `a token in ${p}`);
  noteSecret(tok, tenantId ? { kind: 'tenant-admin', tenantId } : { kind: 'operator' });
  return tok;
}
const whoami = (t, token) => request(t, '/v1/whoami', { token });

for (const backend of backends()) {
  describe(`console operator tokens and tenants (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, c, me;
    before(async () => {
      t = await startTokend({ backend });
      me = (await whoami(t, t.token)).json;
      c = await consoleSignIn(t);
    });
    after(() => stopAndScan(t));

    it('issues a token through form#token-create: shown once in p#new-token, then only its preview; markup in its name is text', async () => {
      const pg = await c.get('/console/tokens');
      assert.equal(pg.status, 200, pg.text);
      assert.ok(byId(pg.text, 'token-create'), 'form#token-create for an admin');
      assert.ok(dataIds(pg.text, 'tokens').length >= 1);
      const res = await c.submit(pg, '/console/tokens', { name: XSS, role: 'viewer', expires_in: '86400' });
      assert.equal(res.status, 200, res.text);
      const tok = newToken(res.text);
      assert.ok(!res.text.includes(XSS), 'the name is escaped');
      assert.ok(res.text.includes('&lt;img src=x onerror=alert(1)&gt;'));
      const who = await whoami(t, tok);
      assert.equal(who.status, 200, who.text);
      assert.equal(who.json.role, 'viewer');
      const id = /<dt>Id<\/dt><dd><code>([0-9a-f-]{36})<\/code>/.exec(res.text)[1];

      const list = await c.get('/console/tokens');
      assert.ok(!list.text.includes(tok), 'the list never shows the token');
      assert.ok(!ISSUED.test(list.text));
      assert.ok(!list.text.includes(XSS));
      const row = rowOf(list.text, id);
      assert.ok(row, 'the new token is listed');
      assert.match(row, /<td class="name">&lt;img src=x onerror=alert\(1\)&gt;<\/td>/);
      assert.match(textOf(row), /viewer/);
      const preview = (await api(t, '/v1/operator-tokens')).json.tokens.find((x) => x.id === id).preview;
      assert.ok(row.includes(preview), 'its preview');
      assert.match(row, /badge b-active/);
      assert.match(row, /<form method="post" action="\/console\/tokens\/[0-9a-f-]{36}\/revoke" class="inline revoke">/);
      // the session's own token is marked
      assert.match(rowOf(list.text, me.token_id || me.id) || '', /this session/);
      // a refusal of the API is a page naming the field
      const bad = await c.submit(list, '/console/tokens', { name: 'x', role: 'root' });
      assert.equal(bad.status, 400);
      assert.match(textOf(bad.text), /role must be one of admin, operator, viewer/);
    });

    it('revokes through form.revoke: 303 back to the list, the token refused on /v1/whoami, shown revoked', async () => {
      const made = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'to-revoke', role: 'operator' } });
      assert.equal(made.status, 201);
      assert.equal((await whoami(t, made.json.token)).status, 200);
      const pg = await c.get('/console/tokens');
      const res = await c.submit(pg, `/console/tokens/${made.json.id}/revoke`);
      assert.equal(res.status, 303, res.text);
      assert.equal(res.headers.location, '/console/tokens');
      assert.equal((await whoami(t, made.json.token)).status, 401);
      const after = await c.get('/console/tokens');
      const row = rowOf(after.text, made.json.id);
      assert.match(row, /badge b-revoked/);
      assert.doesNotMatch(row, /<form/, 'no revoke form on a revoked token');
      // an expired token says so
      const old = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'expired-one', role: 'viewer', expires_in: 60 } });
      assert.equal(old.status, 201);
      await sql(t, `UPDATE operator_tokens SET expires_at = ${Date.now() - 1000} WHERE id = '${old.json.id}'`);
      assert.match(rowOf((await c.get('/console/tokens')).text, old.json.id), /badge b-expired/);
      // another tenant's token id: the API's 404 as a page
      const ten = await createTenant(t);
      const other = await c.postRaw(`/console/tokens/${ten.tokenId}/revoke`, { csrf: await c.csrf() });
      assert.equal(other.status, 404);
      assert.equal((await whoami(t, ten.token)).status, 200);
    });

    it('revoking the session\'s own token ends the session', async () => {
      const second = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'second-admin', role: 'admin' } });
      assert.equal(second.status, 201);
      const s2 = await consoleSignIn(t, { token: second.json.token });
      const pg = await s2.get('/console/tokens');
      assert.match(rowOf(pg.text, second.json.id), /this session/);
      const res = await s2.submit(pg, `/console/tokens/${second.json.id}/revoke`);
      assert.equal(res.status, 303);
      const next = await s2.get('/console/tokens');
      assert.equal(next.status, 303);
      assert.match(next.headers.location, /^\/console\/login\?why=revoked/);
    });

    it('a viewer sees the tokens without create or revoke forms; its POSTs are 403 and change nothing; tenants are 403', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'console-viewer', role: 'viewer' } });
      assert.equal(v.status, 201);
      const vc = await consoleSignIn(t, { token: v.json.token });
      const pg = await vc.get('/console/tokens');
      assert.equal(pg.status, 200);
      assert.ok(byId(pg.text, 'tokens'));
      assert.equal(byId(pg.text, 'token-create'), null);
      assert.doesNotMatch(pg.text, /class="inline revoke"/);
      assert.doesNotMatch(pg.text, /href="\/console\/tenants"/, 'no tenants link for a viewer');
      const before = (await api(t, '/v1/operator-tokens')).json.tokens;
      const csrf = await vc.csrf();
      const create = await vc.postRaw('/console/tokens', { csrf, name: 'by-viewer', role: 'admin' });
      assert.equal(create.status, 403);
      const revoke = await vc.postRaw(`/console/tokens/${v.json.id}/revoke`, { csrf });
      assert.equal(revoke.status, 403);
      const after = (await api(t, '/v1/operator-tokens')).json.tokens;
      assert.deepEqual(after, before);
      assert.equal((await whoami(t, v.json.token)).status, 200);
      assert.equal((await vc.get('/console/tenants')).status, 403);
      assert.equal((await vc.postRaw('/console/tenants', { csrf, name: 'by-viewer' })).status, 403);
    });

    it('tenants: node admins list and create them (the first admin token shown once); another tenant\'s admin gets 403', async () => {
      const pg = await c.get('/console/tenants');
      assert.equal(pg.status, 200, pg.text);
      assert.ok(byId(pg.text, 'tenant-create'), 'form#tenant-create');
      const ids = dataIds(pg.text, 'tenants');
      assert.ok(ids.includes(me.tenant_id), 'the default tenant is listed');
      const res = await c.submit(pg, '/console/tenants', { name: 'acme-console' });
      assert.equal(res.status, 200, res.text);
      const tid = /<dt>Id<\/dt><dd><code>([0-9a-f-]{36})<\/code>/.exec(res.text)[1];
      const tok = newToken(res.text, tid);
      const who = await whoami(t, tok);
      assert.equal(who.status, 200);
      assert.equal(who.json.tenant_id, tid);
      assert.equal(who.json.role, 'admin');
      const list = await c.get('/console/tenants');
      assert.ok(dataIds(list.text, 'tenants').includes(tid));
      assert.match(textOf(byId(list.text, 'tenants')), /acme-console/);
      assert.ok(!list.text.includes(tok));
      // the same name again: the API's 409 as a page
      const dup = await c.submit(list, '/console/tenants', { name: 'acme-console' });
      assert.equal(dup.status, 409);
      const badName = await c.submit(list, '/console/tenants', { name: XSS });
      assert.equal(badName.status, 400);
      assert.ok(!badName.text.includes(XSS));

      // the new tenant's admin: its own tokens only, and no tenants page
      const tc = await consoleSignIn(t, { token: tok });
      const mine = await tc.get('/console/tokens');
      assert.equal(mine.status, 200);
      assert.deepEqual(dataIds(mine.text, 'tokens'), [who.json.token_id || who.json.id]);
      assert.ok(byId(mine.text, 'token-create'), 'a tenant admin issues its tenant\'s tokens');
      assert.equal((await tc.get('/console/tenants')).status, 403);
      assert.equal((await tc.postRaw('/console/tenants', { csrf: await tc.csrf(), name: 'by-tenant-admin' })).status, 403);
      assert.equal((await api(t, '/v1/tenants?limit=1000')).json.tenants.some((x) => x.name === 'by-tenant-admin'), false);
    });

    it('a long list of tokens with names full of markup stays under 100 KB and pages on', async () => {
      const made = [];
      for (let i = 0; i < 80; i++) {
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: `${i}${'"<>&\''.repeat(12)}`.slice(0, 64), role: 'viewer' } });
        assert.equal(r.status, 201, r.text);
        made.push(r.json.id);
      }
      const all = (await api(t, '/v1/operator-tokens')).json.tokens.map((x) => x.id);
      const seen = [];
      let path = '/console/tokens';
      let pages = 0;
      for (let n = 0; path && n < 10; n++, pages++) {
        const pg = await c.get(path);
        assert.equal(pg.status, 200, pg.text.slice(0, 500));
        assert.ok(pg.text.length < 100 * 1024, `page size ${pg.text.length}`);
        assert.ok(!pg.text.includes('<>&'));
        seen.push(...dataIds(pg.text, 'tokens'));
        const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(pg.text);
        path = next ? next[1] : null;
      }
      assert.ok(pages >= 2, 'more than one page');
      assert.deepEqual(seen, all);
      for (const id of made) assert.ok(seen.includes(id));
    });

    it('pages 50 tenants at a time', async () => {
      for (let i = 0; i < 50; i++) await createTenant(t);
      const p1 = await c.get('/console/tenants');
      assert.equal(dataIds(p1.text, 'tenants').length, 50);
      const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(p1.text);
      assert.ok(next);
      const p2 = await c.get(next[1]);
      assert.equal(p2.status, 200);
      const all = (await api(t, '/v1/tenants?limit=1000')).json.tenants.map((x) => x.id);
      assert.deepEqual([...dataIds(p1.text, 'tenants'), ...dataIds(p2.text, 'tenants')], all);
    });
  });
}
