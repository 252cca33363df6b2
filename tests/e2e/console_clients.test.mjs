// The console's clients and agents pages (issue 17): the clients list
// (status filter, paging), a client's page (its report: tokens by preview,
// failures by reason, the status form), rotate showing the new token once
// while the old one works within its grace, revoke, disable, a viewer who
// sees no form and whose POSTs are 403, another tenant's client a 404 page,
// names with markup shown as text, agents registered with a client token
// listed (stale ones first, ?status=stale).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { api, backends, createTenant, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { noteSecret } from './lib/secrets.mjs';
import { byId, consoleSignIn, textOf } from './lib/console.mjs';

const EVIL = '<script>alert("x")</script> Acme & Co';
const PAGE_MAX = 100 * 1024;

/** The verdict of GET /v1/tokens/validate for a client token. */
async function verdict(t, token) {
  const r = await request(t, '/v1/tokens/validate', { token });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

function assertPage(pg, status = 200) {
  assert.equal(pg.status, status, `${pg.url}: ${pg.status} ${textOf(pg.text).slice(0, 400)}`);
  assert.match(pg.headers['content-type'], /^text\/html/);
  assert.ok(Buffer.byteLength(pg.text) < PAGE_MAX, `${pg.url} is ${pg.text.length} bytes`);
}

/** The <form> opening tags of a page that post to a console path (not sign-out). */
function actionForms(html) {
  return [...html.matchAll(/<form\b[^>]*>/g)].map((m) => m[0]).filter((f) => !/action="\/console\/logout"/.test(f));
}

for (const backend of backends()) {
  describe(`console clients and agents (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, c, client, tok;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('lists clients (markup in a name is text) and shows a client: tokens by preview, failures, the status form', async () => {
      t = await startTokend({ backend, args: ['--agent-heartbeat-interval', '1', '--agent-stale-after', '2'] });
      const cr = await api(t, '/v1/clients', { method: 'POST', json: { name: EVIL, email: 'ops@acme.example', metadata: { team: '<b>edge</b>' } } });
      assert.equal(cr.status, 201, cr.text);
      client = cr.json;
      const tr = await api(t, `/v1/clients/${client.id}/tokens`, { method: 'POST', json: { name: 'agent "main"' } });
      assert.equal(tr.status, 201, tr.text);
      tok = tr.json;
      c = await consoleSignIn(t);

      const list = await c.get('/console/clients');
      assertPage(list);
      const table = byId(list.text, 'clients');
      assert.ok(table, 'table#clients');
      const row = new RegExp(`<tr data-id="${client.id}">[\\s\\S]*?</tr>`).exec(table);
      assert.ok(row, 'the client has its row');
      assert.ok(row[0].includes(`href="/console/clients/${client.id}"`));
      assert.match(textOf(row[0]), /<script>alert\("x"\)<\/script> Acme & Co/);
      assert.match(textOf(row[0]), /active/);
      assert.ok(!list.text.includes('<script>alert'), 'the name is escaped');
      // the status filter is the API's
      const dis = await c.get('/console/clients?status=disabled');
      assertPage(dis);
      assert.ok(!byId(dis.text, 'clients').includes(client.id));
      const bad = await c.get('/console/clients?status=bogus');
      assertPage(bad, 400);
      assert.match(textOf(bad.text), /status/);

      const pg = await c.get(`/console/clients/${client.id}`);
      assertPage(pg);
      assert.ok(!pg.text.includes('<script>alert') && !pg.text.includes('<b>edge'), 'name and metadata escaped');
      assert.match(pg.text, /<dl class="kv"/);
      const tokens = byId(pg.text, 'client-tokens');
      assert.ok(tokens, 'table#client-tokens');
      assert.ok(tokens.includes(tok.preview), 'the preview is shown');
      assert.ok(!pg.text.includes(tok.token), 'never the token');
      assert.match(textOf(tokens), /agent "main"/);
      assert.match(tokens, new RegExp(`<form method="post" action="/console/clients/${client.id}/tokens/${tok.id}/rotate" class="rotate inline">`));
      assert.match(tokens, new RegExp(`action="/console/clients/${client.id}/tokens/${tok.id}/revoke" class="revoke inline"`));
      assert.ok(byId(pg.text, 'failures'), 'section#failures');
      assert.match(byId(pg.text, 'failures'), /<section id="failures"/);
      assert.match(pg.text, /<form id="client-status" method="post" action="\/console\/clients\/[0-9a-f-]+"/);
      assert.match(textOf(byId(pg.text, 'client-conclusion')), /is active with 1 usable token/);
    });

    it('rotate shows the new token once; the old one still validates within its grace', async () => {
      const pg = await c.get(`/console/clients/${client.id}`);
      const res = await c.submit(pg, `/console/clients/${client.id}/tokens/${tok.id}/rotate`, { grace: '300' });
      assertPage(res);
      const shown = byId(res.text, 'new-token');
      assert.ok(shown && /^<p class="secret" id="new-token">/.test(shown), 'p.secret#new-token');
      const fresh = /tkc_[A-Za-z0-9_-]+/.exec(textOf(shown))[0];
      noteSecret(fresh, { kind: 'issued', origin: { url: t.url, dataDir: t.dataDir, store: t.store } });
      assert.match(textOf(res.text), /shown this once/);
      assert.notEqual(fresh, tok.token);
      const v = await verdict(t, fresh);
      assert.equal(v.valid, true, JSON.stringify(v));
      const old = await verdict(t, tok.token);
      assert.equal(old.valid, true, `the old token within its grace: ${JSON.stringify(old)}`);
      // the client's page afterwards: never the new token, the old one rotating
      const after1 = await c.get(`/console/clients/${client.id}`);
      assertPage(after1);
      assert.ok(!after1.text.includes(fresh) && !after1.text.includes(tok.token));
      const tokens = byId(after1.text, 'client-tokens');
      assert.match(tokens, new RegExp(`<tr data-id="${tok.id}" data-status="rotating">`));
      // a rotating token has no rotate form (the API would say already_rotated), a revoke one
      assert.ok(!tokens.includes(`/tokens/${tok.id}/rotate`));
      assert.ok(tokens.includes(`/tokens/${tok.id}/revoke`));
      tok.next = { token: fresh, id: /<dd><code>([0-9a-f-]{36})<\/code>/.exec(byId(res.text, 'rotated'))[1] };
      // a grace that is not a number: the API's 400 names the field
      const bad = await c.submit(after1, `/console/clients/${client.id}/tokens/${tok.next.id}/rotate`, { grace: 'soon' });
      assertPage(bad, 400);
      assert.match(textOf(bad.text), /grace/);
    });

    it('revoke makes validation fail; the failures show by reason', async () => {
      const pg = await c.get(`/console/clients/${client.id}`);
      const res = await c.submit(pg, `/console/clients/${client.id}/tokens/${tok.next.id}/revoke`);
      assert.equal(res.status, 303, textOf(res.text));
      assert.equal(res.headers.location, `/console/clients/${client.id}`);
      const v = await verdict(t, tok.next.token);
      assert.equal(v.valid, false);
      assert.equal(v.reason, 'revoked');
      await verdict(t, tok.next.token);
      const page = await waitFor(
        async () => {
          const p = await c.get(`/console/clients/${client.id}`);
          return /data-reason="revoked"/.test(byId(p.text, 'failures') || '') ? p : null;
        },
        { timeoutMs: 15000, intervalMs: 200, message: 'the failures by reason on the page' },
      );
      assertPage(page);
      assert.match(byId(page.text, 'client-tokens'), new RegExp(`<tr data-id="${tok.next.id}" data-status="revoked">`));
      assert.match(textOf(byId(page.text, 'failures')), /revoked \d+/);
    });

    it('disable shows disabled (its tokens fail), enable brings it back', async () => {
      const tr = await api(t, `/v1/clients/${client.id}/tokens`, { method: 'POST', json: { name: 'second' } });
      assert.equal(tr.status, 201);
      const pg = await c.get(`/console/clients/${client.id}`);
      const res = await c.submit(pg, `/console/clients/${client.id}`, { status: 'disabled' });
      assert.equal(res.status, 303, textOf(res.text));
      const shown = await c.get(`/console/clients/${client.id}`);
      assertPage(shown);
      assert.match(byId(shown.text, 'client-status-value'), /b-disabled/);
      assert.match(textOf(byId(shown.text, 'client-conclusion')), /was disabled/);
      assert.equal((await api(t, `/v1/clients/${client.id}`)).json.status, 'disabled');
      assert.equal((await verdict(t, tr.json.token)).reason, 'client_inactive');
      const list = await c.get('/console/clients?status=disabled');
      assert.ok(byId(list.text, 'clients').includes(`data-id="${client.id}"`));
      const back = await c.submit(shown, `/console/clients/${client.id}`, { status: 'active' });
      assert.equal(back.status, 303);
      assert.equal((await api(t, `/v1/clients/${client.id}`)).json.status, 'active');
      assert.equal((await verdict(t, tr.json.token)).valid, true);
      const nonsense = await c.submit(shown, `/console/clients/${client.id}`, { status: 'gone' });
      assertPage(nonsense, 400);
    });

    it('a viewer sees the pages without a form, and its POSTs are 403 changing nothing', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'viewer-clients', role: 'viewer' } });
      assert.equal(v.status, 201);
      const vc = await consoleSignIn(t, { token: v.json.token });
      const tr = await api(t, `/v1/clients/${client.id}/tokens`, { method: 'POST', json: { name: 'for-viewer' } });
      const pg = await vc.get(`/console/clients/${client.id}`);
      assertPage(pg);
      assert.ok(byId(pg.text, 'client-tokens').includes(tr.json.preview));
      assert.deepEqual(actionForms(pg.text), [], 'no form but sign-out');
      const csrf = await vc.csrf();
      for (const [path, fields] of [
        [`/console/clients/${client.id}`, { status: 'disabled' }],
        [`/console/clients/${client.id}/tokens/${tr.json.id}/rotate`, { grace: '0' }],
        [`/console/clients/${client.id}/tokens/${tr.json.id}/revoke`, {}],
      ]) {
        const res = await vc.postRaw(path, { ...fields, csrf });
        assert.equal(res.status, 403, `${path}: ${res.status}`);
        assert.ok(!/tkc_/.test(res.text));
      }
      assert.equal((await api(t, `/v1/clients/${client.id}`)).json.status, 'active');
      assert.equal((await verdict(t, tr.json.token)).valid, true);
      const toks = (await api(t, `/v1/clients/${client.id}/tokens`)).json.tokens;
      assert.equal(toks.find((x) => x.id === tr.json.id).status, 'active');
    });

    it("another tenant's client is a 404 page, absent from its list, and cannot be acted on", async () => {
      const other = await createTenant(t);
      const oc = await consoleSignIn(t, { token: other.token });
      const pg = await oc.get(`/console/clients/${client.id}`);
      assertPage(pg, 404);
      assert.ok(!pg.text.includes('Acme'));
      const list = await oc.get('/console/clients');
      assertPage(list);
      assert.ok(!byId(list.text, 'clients').includes(client.id));
      const toks = (await api(t, `/v1/clients/${client.id}/tokens`)).json.tokens;
      const live = toks.find((x) => x.status === 'active');
      const csrf = await oc.csrf();
      const rot = await oc.postRaw(`/console/clients/${client.id}/tokens/${live.id}/rotate`, { grace: '0', csrf });
      assert.equal(rot.status, 404);
      const upd = await oc.postRaw(`/console/clients/${client.id}`, { status: 'disabled', csrf });
      assert.equal(upd.status, 404);
      assert.equal((await api(t, `/v1/clients/${client.id}`)).json.status, 'active');
      const ag = await oc.get('/console/agents');
      assertPage(ag);
      const junk = await c.get('/console/clients/not-a-uuid');
      assertPage(junk, 404);
    });

    it('an agent registered with a client token appears on /console/agents; stale ones first and under ?status=stale', async () => {
      const tr = await api(t, `/v1/clients/${client.id}/tokens`, { method: 'POST', json: { name: 'fleet' } });
      const reg = async (id) => {
        const r = await request(t, '/v1/agents/register', { method: 'POST', token: tr.json.token, json: { logical_agent_id: id, hostname: 'host-1.example', version: '1.2.3' } });
        assert.equal(r.status, 201, r.text);
        return r.json;
      };
      const quiet = await reg('agent-quiet');
      const pg = await c.get('/console/agents');
      assertPage(pg);
      const table = byId(pg.text, 'agents');
      assert.ok(table, 'table#agents');
      const row = new RegExp(`<tr id="${quiet.id}" data-id="${quiet.id}"[^>]*>[\\s\\S]*?</tr>`).exec(table);
      assert.ok(row, 'the agent has its row');
      assert.match(textOf(row[0]), /agent-quiet host-1\.example/);
      assert.match(textOf(row[0]), /1\.2\.3/);
      assert.ok(row[0].includes(`href="/console/clients/${client.id}"`));
      assert.match(textOf(row[0]), /<script>alert\("x"\)<\/script> Acme & Co/, 'the client by name, as text');
      assert.ok(!pg.text.includes('<script>alert'));
      // quiet goes stale; a busy one registered later keeps heartbeating
      await waitFor(async () => (await api(t, `/v1/agents?client_id=${client.id}&status=stale`)).json.agents.some((x) => x.id === quiet.id), {
        timeoutMs: 20000, intervalMs: 200, message: 'the agent to go stale',
      });
      const busy = await reg('agent-busy');
      const stale = await c.get('/console/agents');
      assertPage(stale);
      const ids = [...byId(stale.text, 'agents').matchAll(/<tr id="([0-9a-f-]{36})" data-id="[^"]+" data-status="(\w+)"/g)].map((m) => [m[1], m[2]]);
      assert.deepEqual(ids.map((x) => x[0]), [quiet.id, busy.id], 'stale first though older');
      assert.deepEqual(ids.map((x) => x[1]), ['stale', 'online']);
      assert.ok(byId(stale.text, 'stale-notice'));
      const only = await c.get('/console/agents?status=stale');
      assertPage(only);
      assert.ok(byId(only.text, 'agents').includes(quiet.id));
      assert.ok(!byId(only.text, 'agents').includes(busy.id));
      const mine = await c.get(`/console/agents?client_id=${client.id}&status=online`);
      assertPage(mine);
      assert.ok(byId(mine.text, 'agents').includes(busy.id) && !byId(mine.text, 'agents').includes(quiet.id));
      const bad = await c.get('/console/agents?status=asleep');
      assertPage(bad, 400);
      // the client's page counts them
      const cp = await c.get(`/console/clients/${client.id}`);
      assert.match(textOf(cp.text), /2 agent\(s\) ?, [12] stale/);
    });

    it("a client's 100 tokens with names all quotes stay under 100 KB: 30 a page, then a link to the rest", async () => {
      const big = (await api(t, '/v1/clients', { method: 'POST', json: { name: '"'.repeat(128), metadata: Object.fromEntries([...Array(32)].map((_, i) => [`k${i}`, '&'.repeat(512)])) } })).json;
      const ids = [];
      for (let i = 0; i < 100; i++) {
        const r = await api(t, `/v1/clients/${big.id}/tokens`, { method: 'POST', json: { name: `${'"'.repeat(60)}${String(i).padStart(3, '0')}` } });
        assert.equal(r.status, 201, r.text);
        ids.push(r.json.id);
      }
      const seen = new Set();
      let url = `/console/clients/${big.id}`;
      for (let n = 0; url && n < 10; n++) {
        const pg = await c.get(url);
        assertPage(pg);
        const rows = [...byId(pg.text, 'client-tokens').matchAll(/<tr data-id="([^"]+)"/g)].map((m) => m[1]);
        assert.ok(rows.length <= 30);
        for (const id of rows) seen.add(id);
        const more = /<a id="next-tokens" href="([^"]+)"/.exec(pg.text);
        url = more ? more[1].replace(/&amp;/g, '&') : null;
      }
      assert.equal(seen.size, 100, 'every token on some page');
      assert.deepEqual([...seen].sort(), ids.sort());
    });

    it('pages the clients list 50 at a time with a next link', async () => {
      for (let i = 0; i < 51; i++) {
        const r = await api(t, '/v1/clients', { method: 'POST', json: { name: `bulk-${i}` } });
        assert.equal(r.status, 201);
      }
      const first = await c.get('/console/clients');
      assertPage(first);
      const rows = (html) => [...byId(html, 'clients').matchAll(/<tr data-id="([^"]+)"/g)].map((m) => m[1]);
      assert.equal(rows(first.text).length, 50);
      const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(first.text);
      assert.ok(next, 'a next page link');
      const second = await c.get(next[1].replace(/&amp;/g, '&'));
      assertPage(second);
      const two = rows(second.text);
      assert.ok(two.length >= 2, `the rest: ${two.length}`);
      assert.equal(new Set([...rows(first.text), ...two]).size, rows(first.text).length + two.length, 'no row twice');
      assert.ok(two.includes(client.id), 'the oldest client on the second page');
    });
  });
}
