// The console's OAuth pages (issue 17): flows with their quick filters
// (stuck, failed, completed, active), the client filter and paging; a
// flow's stages, failure and diagnosis; the OAuth clients and one client's
// metadata (never its secret) with its stuck and failed flows first;
// another tenant's flow or client is a 404 page.
//
// The flows are real: a PKCE verifier mismatch at the token endpoint after
// a browser went through login and consent (field report 001), a
// redirect_uri that differs by a trailing slash, an authorization abandoned
// on the login page (back-dated in the store to be a minute old, as
// oauth_flows.test.mjs does), a completed exchange.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { api, backends, createTenant, request, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { authorizeInBrowser, createClient, createScope, createUser } from './lib/oauthflow.mjs';
import { byId, consoleSignIn, textOf } from './lib/console.mjs';
import { addClient, tenantOf } from './lib/oauthflows.mjs';

/** SQL on the node's store behind its back (SQLite: waiting for its lock). */
const sql = (t, s) => storeSql(t, (t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; ') + s);
const CB = 'https://app.example/cb';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function pkcePair() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

function authUrl(t, c, extra = {}) {
  const q = { response_type: 'code', client_id: c.client_id, redirect_uri: CB, state: crypto.randomBytes(6).toString('hex'), scope: 'notes:read', ...extra };
  return `${t.url}/oauth2/authorize?${new URLSearchParams(q)}`;
}

/** GET /oauth2/authorize as a browser would, without following anything. */
function authorizeRaw(t, c, extra = {}) {
  return request(t, '/', { rawPath: '/oauth2/authorize?' + new URL(authUrl(t, c, { code_challenge: pkcePair().challenge, code_challenge_method: 'S256', ...extra })).searchParams });
}

function tokenReq(t, params) {
  return request(t, '/oauth2/token', { method: 'POST', body: new URLSearchParams(params).toString(), headers: FORM });
}

/** The <tr data-id="id" ...>...</tr> of a page, or null. */
function rowOf(html, id) {
  const m = new RegExp(`<tr data-id="${id}"[^>]*>([\\s\\S]*?)</tr>`).exec(html);
  return m ? m[0] : null;
}
/** The text of the first <td class="cls"> of a row. */
function cell(row, cls) {
  const m = new RegExp(`<td class="${cls}">([\\s\\S]*?)</td>`).exec(row);
  return m ? textOf(m[1]) : null;
}
function dataIds(html, tableId) {
  const table = byId(html, tableId);
  return table ? [...table.matchAll(/<tr data-id="([^"]+)"/g)].map((m) => m[1]) : [];
}

for (const backend of backends()) {
  describe(`console OAuth pages (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, c, user, pub, conf, other;
    const flows = {};
    before(async () => {
      t = await startTokend({ backend });
      await createScope(t, 'notes:read');
      user = await createUser(t);
      pub = await createClient(t, {
        name: 'notes <b>app</b>',
        client_type: 'public',
        token_endpoint_auth_method: 'none',
        redirect_uris: [CB],
        scopes: ['notes:read'],
        default_scopes: ['notes:read'],
      });
      conf = await createClient(t, { client_type: 'confidential', redirect_uris: [CB], scopes: ['notes:read'] });
      other = await createClient(t, { client_type: 'public', token_endpoint_auth_method: 'none', redirect_uris: [CB], scopes: ['notes:read'] });

      // completed: login, consent, exchange with the right verifier
      const good = pkcePair();
      let { callback } = await authorizeInBrowser(authUrl(t, pub, { code_challenge: good.challenge, code_challenge_method: 'S256' }), { redirectUri: CB, email: user.email, password: user.password });
      let r = await tokenReq(t, { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: CB, client_id: pub.client_id, code_verifier: good.verifier });
      assert.equal(r.status, 200, r.text);
      flows.done = (await api(t, `/v1/oauth/flows?client_id=${pub.client_id}&limit=1`)).json.flows[0].id;

      // failed at the exchange: another verifier (field report 001)
      const p = pkcePair();
      ({ callback } = await authorizeInBrowser(authUrl(t, pub, { code_challenge: p.challenge, code_challenge_method: 'S256' }), { redirectUri: CB, email: user.email, password: user.password }));
      r = await tokenReq(t, { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: CB, client_id: pub.client_id, code_verifier: pkcePair().verifier });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error, 'invalid_grant');
      flows.pkce = (await api(t, `/v1/oauth/flows?client_id=${pub.client_id}&limit=1`)).json.flows[0].id;

      // failed at authorize_received: a redirect_uri with a trailing slash
      r = await authorizeRaw(t, pub, { redirect_uri: `${CB}/` });
      assert.ok(r.status >= 400, `${r.status} ${r.text}`);
      flows.slash = (await api(t, `/v1/oauth/flows?client_id=${pub.client_id}&limit=1`)).json.flows[0].id;

      // stuck: the browser went to the login page and never came back
      r = await authorizeRaw(t, pub);
      assert.equal(r.status, 303, r.text);
      flows.stuck = /flow=([0-9a-f-]{36})/.exec(r.headers.location)[1];
      await sql(t, `UPDATE oauth_flows SET updated_at = updated_at - 120000, created_at = created_at - 120000 WHERE id = '${flows.stuck}'`);

      // active: just started
      r = await authorizeRaw(t, pub);
      assert.equal(r.status, 303, r.text);
      flows.active = /flow=([0-9a-f-]{36})/.exec(r.headers.location)[1];

      c = await consoleSignIn(t);
    });
    after(() => stopAndScan(t));
    // the active flow stays active however slow a loaded machine runs the
    // suite (a minute without a stage would make it stuck)
    const keepActive = () => sql(t, `UPDATE oauth_flows SET updated_at = ${Date.now()} WHERE id = '${flows.active}'`);

    it('lists failed flows under ?status=failed with their stage and sentence, stuck ones under ?status=stuck', async () => {
      await keepActive();
      const failed = await c.get('/console/oauth/flows?status=failed');
      assert.equal(failed.status, 200, failed.text);
      assert.deepEqual(dataIds(failed.text, 'flows'), [flows.slash, flows.pkce]);
      const pk = rowOf(failed.text, flows.pkce);
      assert.equal(cell(pk, 'stage'), 'token_exchanged');
      assert.match(cell(pk, 'reason'), /invalid_grant code_verifier does not match code_challenge/);
      assert.match(pk, new RegExp(`href="/console/oauth/flows/${flows.pkce}"`));
      const sl = rowOf(failed.text, flows.slash);
      assert.equal(cell(sl, 'stage'), 'authorize_received');
      assert.match(cell(sl, 'reason'), /redirect_uri/);
      assert.match(cell(sl, 'reason'), /https:\/\/app\.example\/cb\//);

      const stuck = await c.get('/console/oauth/flows?status=stuck');
      assert.equal(stuck.status, 200, stuck.text);
      assert.deepEqual(dataIds(stuck.text, 'flows'), [flows.stuck]);
      const st = rowOf(stuck.text, flows.stuck);
      assert.equal(cell(st, 'stage'), 'authorize_received');
      assert.match(st, /badge b-stuck/);

      assert.deepEqual(dataIds((await c.get('/console/oauth/flows?status=active')).text, 'flows'), [flows.active]);
      assert.deepEqual(dataIds((await c.get('/console/oauth/flows?status=completed')).text, 'flows'), [flows.done]);
      const all = await c.get('/console/oauth/flows');
      assert.deepEqual(dataIds(all.text, 'flows'), [flows.active, flows.stuck, flows.slash, flows.pkce, flows.done]);
      // the quick filters are links
      for (const s of ['stuck', 'failed', 'completed', 'active']) assert.match(all.text, new RegExp(`href="/console/oauth/flows\\?status=${s}"`));
      // a bad status is the API's 400, as a page
      const bad = await c.get('/console/oauth/flows?status=broken');
      assert.equal(bad.status, 400);
      assert.match(textOf(bad.text), /status must be one of/);
    });

    it('filters by client_id with form#flow-filters, keeping the status; pages 50 rows at a time', async () => {
      const pg = await c.get('/console/oauth/flows?status=failed');
      const f = pg.forms.find((x) => x.method === 'GET');
      assert.ok(byId(pg.text, 'flow-filters'), 'form#flow-filters');
      assert.equal(f.fields.status, 'failed');
      const u = new URL(f.action);
      u.searchParams.set('status', 'failed');
      u.searchParams.set('client_id', other.client_id);
      const none = await c.get(u.pathname + u.search);
      assert.equal(none.status, 200);
      assert.deepEqual(dataIds(none.text, 'flows'), []);
      assert.ok(byId(none.text, 'no-flows'));

      // 52 flows of `other`: 50 on the first page, a next link to the rest
      const made = [];
      for (let i = 0; i < 52; i++) {
        const r = await authorizeRaw(t, other);
        assert.equal(r.status, 303, r.text);
        made.push(/flow=([0-9a-f-]{36})/.exec(r.headers.location)[1]);
      }
      const p1 = await c.get(`/console/oauth/flows?client_id=${encodeURIComponent(other.client_id)}`);
      assert.equal(p1.status, 200);
      assert.ok(p1.text.length < 100 * 1024, `page size ${p1.text.length}`);
      const ids1 = dataIds(p1.text, 'flows');
      assert.equal(ids1.length, 50);
      assert.deepEqual(ids1, made.slice().reverse().slice(0, 50));
      const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(p1.text);
      assert.ok(next, 'a next page link');
      const p2 = await c.get(next[1].replace(/&amp;/g, '&'));
      assert.equal(p2.status, 200);
      assert.deepEqual(dataIds(p2.text, 'flows'), [made[1], made[0]]);
      assert.ok(!/id="next-page"/.test(p2.text));
    });

    it('a list of flows with long failure sentences full of markup stays under 100 KB and pages on', async () => {
      // a client_id of 456 bytes of markup (planted in the store: the API
      // makes UUIDs; a metadata document's URL may be this long)
      const planted = await addClient(t, await tenantOf(t), { clientId: `noisy-${'\'"<>&'.repeat(90)}`, redirect: [CB], scopes: ['notes:read'], defaults: ['notes:read'] });
      const noisy = { id: planted.id, client_id: planted.clientId };
      const junk = `${CB}?x=${'\'"<>&'.repeat(150)}`;
      for (let i = 0; i < 50; i++) {
        const r = await authorizeRaw(t, noisy, { redirect_uri: junk });
        assert.ok(r.status >= 400, `${r.status}`);
      }
      const all = (await api(t, `/v1/oauth/flows?client_id=${encodeURIComponent(noisy.client_id)}&limit=1000`)).json.flows;
      assert.equal(all.length, 50);
      assert.ok(all.every((f) => f.status === 'failed'));
      const seen = [];
      let path = `/console/oauth/flows?status=failed&client_id=${encodeURIComponent(noisy.client_id)}`;
      let pages = 0;
      for (let n = 0; path && n < 10; n++) {
        const pg = await c.get(path);
        assert.equal(pg.status, 200, pg.text.slice(0, 500));
        assert.ok(pg.text.length < 100 * 1024, `page size ${pg.text.length}`);
        assert.ok(!pg.text.includes('<>&'), 'the sentences are escaped');
        seen.push(...dataIds(pg.text, 'flows'));
        pages++;
        const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(pg.text);
        path = next ? next[1].replace(/&amp;/g, '&') : null;
      }
      assert.deepEqual(seen, all.map((f) => f.id));
      assert.ok(pages >= 2, 'the rows did not fit one page: the list went on after the last one shown');
    });

    it('a failed flow\'s page: its stages with times and badges, the RFC error and sentence, the diagnosis, the client', async () => {
      const pg = await c.get(`/console/oauth/flows/${flows.pkce}`);
      assert.equal(pg.status, 200, pg.text);
      const stages = byId(pg.text, 'stages');
      assert.ok(stages, 'ol#stages');
      const items = [...stages.matchAll(/<li data-stage="([a-z_]+)">([\s\S]*?)<\/li>/g)];
      assert.deepEqual(items.map((m) => m[1]), ['authorize_received', 'login', 'consent', 'code_issued', 'token_exchanged', 'token_issued']);
      for (const m of items.slice(0, 4)) {
        assert.match(m[2], /badge b-ok/, m[1]);
        assert.match(m[2], /<time datetime="/, m[1]);
      }
      assert.match(items[4][2], /badge b-failed/);
      assert.match(items[5][2], /not reached/);
      const failure = textOf(byId(pg.text, 'failure'));
      assert.match(failure, /At token_exchanged with invalid_grant/);
      assert.match(failure, /code_verifier does not match code_challenge/);
      const diag = textOf(byId(pg.text, 'diagnosis'));
      assert.match(diag, /The flow failed at token_exchanged/);
      assert.match(diag, /What to change: make the client send the code_verifier/);
      assert.match(pg.text, new RegExp(`<a id="client-link" href="/console/oauth/clients/${pub.id}">`));

      const stuck = await c.get(`/console/oauth/flows/${flows.stuck}`);
      assert.equal(stuck.status, 200);
      assert.equal(byId(stuck.text, 'failure'), null);
      assert.match(textOf(byId(stuck.text, 'diagnosis')), /stuck at authorize_received: the browser never came back from the login page/);
      assert.match(byId(stuck.text, 'stages'), /data-stage="authorize_received"><span class="stage">authorize_received<\/span> <span class="badge b-stuck">/);

      const done = await c.get(`/console/oauth/flows/${flows.done}`);
      assert.equal((byId(done.text, 'stages').match(/badge b-ok/g) || []).length, 6);
      assert.match(textOf(byId(done.text, 'diagnosis')), /completed/);

      // not a flow: the API's 404 as a page
      const nf = await c.get('/console/oauth/flows/0190a0a0-0000-7000-8000-000000000000');
      assert.equal(nf.status, 404);
      assert.equal((await c.get('/console/oauth/flows/not-an-id')).status, 404);
    });

    it('lists OAuth clients; a client\'s page shows its metadata, never its secret, and its stuck and failed flows first', async () => {
      await keepActive();
      const pg = await c.get('/console/oauth/clients');
      assert.equal(pg.status, 200, pg.text);
      const ids = dataIds(pg.text, 'oauth-clients');
      for (const x of [pub, conf, other]) assert.ok(ids.includes(x.id), x.id);
      const row = rowOf(pg.text, pub.id);
      assert.match(row, new RegExp(`href="/console/oauth/clients/${pub.id}"`));
      assert.match(row, /notes &lt;b&gt;app&lt;\/b&gt;/, 'the name escaped');
      assert.match(textOf(row), /public, web/);
      assert.match(textOf(row), /authorization_code, refresh_token/);
      assert.match(row, /badge b-active/);

      const cp = await c.get(`/console/oauth/clients/${conf.id}`);
      assert.equal(cp.status, 200);
      assert.ok(conf.client_secret);
      assert.ok(!cp.text.includes(conf.client_secret), 'no client secret in the page');
      assert.match(textOf(byId(cp.text, 'client')), /Client secret set/);
      assert.match(textOf(byId(cp.text, 'client')), /client_secret_basic/);

      const pp = await c.get(`/console/oauth/clients/${pub.id}`);
      assert.equal(pp.status, 200);
      const kv = textOf(byId(pp.text, 'client'));
      assert.match(kv, new RegExp(`client_id ${pub.client_id}`));
      assert.match(kv, /Redirect URIs https:\/\/app\.example\/cb/);
      assert.ok(pp.text.includes('<h1>notes &lt;b&gt;app&lt;/b&gt;</h1>'));
      assert.deepEqual(dataIds(pp.text, 'flows'), [flows.stuck, flows.slash, flows.pkce, flows.active, flows.done]);
      assert.match(pp.text, new RegExp(`href="/console/oauth/flows\\?client_id=${pub.client_id}"`));
    });

    it('a viewer sees the OAuth pages; another tenant\'s flow and client are 404 pages', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'oauth-viewer', role: 'viewer' } });
      assert.equal(v.status, 201);
      const vc = await consoleSignIn(t, { token: v.json.token });
      assert.equal((await vc.get('/console/oauth/flows?status=failed')).status, 200);
      assert.equal((await vc.get(`/console/oauth/flows/${flows.pkce}`)).status, 200);
      assert.equal((await vc.get(`/console/oauth/clients/${pub.id}`)).status, 200);

      const ten = await createTenant(t);
      const oc = await consoleSignIn(t, { token: ten.token });
      for (const p of [`/console/oauth/flows/${flows.pkce}`, `/console/oauth/clients/${pub.id}`]) {
        const r = await oc.get(p);
        assert.equal(r.status, 404, p);
        assert.match(textOf(r.text), /Not found/);
        assert.ok(!r.text.includes('notes &lt;b&gt;') && !r.text.includes('code_verifier'), 'nothing of the other tenant');
      }
      const list = await oc.get('/console/oauth/flows');
      assert.equal(list.status, 200);
      assert.deepEqual(dataIds(list.text, 'flows'), []);
      assert.deepEqual(dataIds((await oc.get('/console/oauth/clients')).text, 'oauth-clients'), []);
    });
  });
}
