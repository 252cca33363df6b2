// oauth_flows.test.mjs: the flow trace on both backends: GET /v1/oauth/flows
// with its filters (client_id, status active|stuck|failed|completed) and
// paging, GET /v1/oauth/flows/{id} and its diagnosis, `tokend oauth flows
// list|show`, `tokend doctor flow ID` and `tokend doctor oauth-client
// CLIENT_ID` on field report 001's failures, and the flows' metric.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { addClient, authorize, goodParams, newestFlow, tenantOf } from './lib/oauthflows.mjs';
import { api, backends, metric, runCli, scrape, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const ids = (r) => r.json.flows.map((f) => f.id);

for (const backend of backends()) {
  describe(`flow traces and doctor (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, tenant, c, other, env;
    const flows = {};
    before(async () => {
      t = await startTokend({ backend });
      env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      tenant = await tenantOf(t);
      c = await addClient(t, tenant, { redirect: ['https://x.example/cb'], scopes: ['dcr.create'] });
      other = await addClient(t, tenant);
      // a flow that is in progress, one made stuck, one failed at each of
      // field report 001's authorize-stage failures, and one of another client
      for (const k of ['active', 'stuck']) {
        const r = await authorize(t, goodParams(c));
        assert.equal(r.status, 303, r.text);
        flows[k] = /flow=([0-9a-f-]{36})/.exec(r.headers.location)[1];
      }
      await storeSql(t, `UPDATE oauth_flows SET updated_at = updated_at - 120000, created_at = created_at - 120000 WHERE id = '${flows.stuck}'`);
      await authorize(t, goodParams(c, { redirect_uri: 'https://x.example/cb/' }));
      flows.slash = (await newestFlow(t, c.clientId)).id;
      await authorize(t, goodParams(c, { scope: 'admin:all' }));
      flows.scope = (await newestFlow(t, c.clientId)).id;
      // a flow completed (as the token part will record it)
      const r = await authorize(t, goodParams(c));
      flows.done = /flow=([0-9a-f-]{36})/.exec(r.headers.location)[1];
      const now = Date.now();
      await storeSql(
        t,
        `UPDATE oauth_flows SET stage = 'token_issued', status = 'completed', login_at = ${now}, consent_at = ${now}, ` +
          `code_issued_at = ${now}, token_exchanged_at = ${now}, token_issued_at = ${now} WHERE id = '${flows.done}'`,
      );
      await authorize(t, goodParams(other));
    });
    after(() => stopAndScan(t));

    it('lists flows newest first, by client and by status', async () => {
      const all = await api(t, `/v1/oauth/flows?client_id=${c.clientId}`);
      assert.equal(all.status, 200, all.text);
      assert.deepEqual(ids(all), [flows.done, flows.scope, flows.slash, flows.stuck, flows.active]);
      assert.equal(all.json.next_cursor, null);
      const by = async (status) => ids(await api(t, `/v1/oauth/flows?client_id=${c.clientId}&status=${status}`));
      assert.deepEqual(await by('failed'), [flows.scope, flows.slash]);
      assert.deepEqual(await by('stuck'), [flows.stuck]);
      assert.deepEqual(await by('active'), [flows.active]);
      assert.deepEqual(await by('completed'), [flows.done]);
      const everyone = await api(t, '/v1/oauth/flows?limit=1000');
      assert.ok(everyone.json.flows.some((f) => f.client_id === other.clientId));
      // paging
      const p1 = await api(t, `/v1/oauth/flows?client_id=${c.clientId}&limit=2`);
      assert.deepEqual(ids(p1), [flows.done, flows.scope]);
      const p2 = await api(t, `/v1/oauth/flows?client_id=${c.clientId}&limit=2&cursor=${p1.json.next_cursor}`);
      assert.deepEqual(ids(p2), [flows.slash, flows.stuck]);
      // refusals in the /v1 shape
      let r = await api(t, '/v1/oauth/flows?status=broken');
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_parameter');
      assert.equal(r.json.field, 'status');
      r = await api(t, '/v1/oauth/flows?status=failed&status=active');
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'duplicate_parameter');
      r = await api(t, '/v1/oauth/flows?client_id=%0d%0a');
      assert.equal(r.status, 400);
      assert.equal((await api(t, '/v1/oauth/flows/not-a-uuid')).status, 404);
      assert.equal((await api(t, '/v1/oauth/flows/0190a0a0-0000-7000-8000-000000000000')).status, 404);
      assert.equal((await api(t, '/v1/oauth/flows', { token: null })).status, 401);
    });

    it('shows a flow with its stages and diagnoses where it stopped', async () => {
      const f = await api(t, `/v1/oauth/flows/${flows.done}`);
      assert.equal(f.status, 200);
      assert.deepEqual(
        f.json.stages.map((s) => s.stage),
        ['authorize_received', 'login', 'consent', 'code_issued', 'token_exchanged', 'token_issued'],
      );
      assert.ok(f.json.stages.every((s) => typeof s.at === 'string'));
      let d = await api(t, `/v1/oauth/flows/${flows.done}/diagnosis`);
      assert.equal(d.json.status, 'completed');
      assert.equal(d.json.next_step, null);
      d = await api(t, `/v1/oauth/flows/${flows.slash}/diagnosis`);
      assert.equal(d.status, 200);
      assert.equal(d.json.stopped_at, 'authorize_received');
      assert.match(d.json.conclusion, /^The flow failed at authorize_received with invalid_request: redirect_uri 'https:\/\/x\.example\/cb\/' does not match the registered 'https:\/\/x\.example\/cb' \(trailing slash\)\.$/);
      assert.equal(d.json.next_step, "register 'https://x.example/cb/' for the client (redirect_uris) or make the client send 'https://x.example/cb'");
      assert.equal(d.json.flow.id, flows.slash);
      d = await api(t, `/v1/oauth/flows/${flows.stuck}/diagnosis`);
      assert.equal(d.json.stuck, true);
      assert.match(d.json.conclusion, /stuck at authorize_received: the browser never came back from the login page/);
    });

    it('tokend oauth flows list|show', async () => {
      let r = await runCli(['oauth', 'flows', 'list', '--client-id', c.clientId, '--status', 'failed'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`${flows.scope} .* failed +authorize_received +scope 'admin:all' is not allowed for this client; allowed: dcr.create`));
      assert.doesNotMatch(r.stdout, new RegExp(flows.active));
      r = await runCli(['oauth', 'flows', 'list', '--json'], { env });
      assert.equal(r.code, 0);
      assert.ok(JSON.parse(r.stdout).flows.length >= 6);
      r = await runCli(['oauth', 'flows', 'show', flows.slash], { env });
      assert.equal(r.code, 0);
      assert.match(r.stdout, /failed at +authorize_received \(invalid_request\)/);
      r = await runCli(['oauth', 'flows', 'show', '0190a0a0-0000-7000-8000-000000000000'], { env });
      assert.equal(r.code, 1);
      r = await runCli(['oauth', 'flows', 'bogus'], { env });
      assert.equal(r.code, 2);
    });

    it('tokend doctor flow ID says where it stopped and what to change', async () => {
      let r = await runCli(['doctor', 'flow', flows.slash], { env });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /The flow failed at authorize_received with invalid_request: redirect_uri 'https:\/\/x\.example\/cb\/' does not match the registered 'https:\/\/x\.example\/cb' \(trailing slash\)\./);
      assert.match(r.stdout, /^next step: register 'https:\/\/x\.example\/cb\/' for the client \(redirect_uris\) or make the client send 'https:\/\/x\.example\/cb'$/m);
      r = await runCli(['doctor', 'flow', flows.scope, '--json'], { env });
      assert.equal(r.code, 1);
      const j = JSON.parse(r.stdout);
      assert.equal(j.flow.error, 'invalid_scope');
      assert.match(j.next_step, /allow 'admin:all' for the client/);
      r = await runCli(['doctor', 'flow', flows.done], { env });
      assert.equal(r.code, 0);
      assert.match(r.stdout, /The flow completed/);
      r = await runCli(['doctor', 'flow', flows.stuck], { env });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /stuck at authorize_received/);
    });

    it('tokend doctor oauth-client CLIENT_ID sums up the recent flows', async () => {
      let r = await runCli(['doctor', 'oauth-client', c.clientId], { env });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /counts +active 1, stuck 1, failed 2, completed 1/);
      assert.match(r.stdout, /latest failures/);
      assert.match(r.stdout, /2 of 5 flows failed; the most frequent failure \(1\) is at authorize_received/);
      assert.match(r.stdout, /^next step: /m);
      r = await runCli(['doctor', 'oauth-client', c.clientId, '--json'], { env });
      const j = JSON.parse(r.stdout);
      assert.deepEqual(j.counts, { active: 1, stuck: 1, failed: 2, completed: 1 });
      assert.equal(j.stuck_flows[0].id, flows.stuck);
      // a client_id with no flows: field report 001's client_id mismatch
      r = await runCli(['doctor', 'oauth-client', 'chatgpt-client-456'], { env });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /No authorization flow of client_id 'chatgpt-client-456'/);
      r = await runCli(['doctor', 'oauth-client', other.clientId], { env });
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, /No failed or stuck flow/);
    });

    it('any role reads flows: a viewer too', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'flows-viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      const r = await api(t, `/v1/oauth/flows/${flows.slash}/diagnosis`, { token: v.json.token });
      assert.equal(r.status, 200, r.text);
      assert.equal((await api(t, '/v1/oauth/flows', { token: v.json.token })).status, 200);
    });

    it('counts flows by stage and outcome', async () => {
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_oauth_flows_total', { stage: 'authorize_received', outcome: 'ok' }) >= 4);
      assert.ok(metric(m, 'tokend_oauth_flows_total', { stage: 'authorize_received', outcome: 'failed' }) >= 2);
    });
  });
}
