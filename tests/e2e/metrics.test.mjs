// metrics.test.mjs: GET /metrics of a real node, every line parsed strictly
// as Prometheus text format 0.0.4, and every series documented in the
// metrics table of README.md (name, type and labels), so that a series
// added later without its row fails here.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { api, backends, REPO, request, seenSecrets, startTokend, stopAndScan, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const NAME = /^tokend_[a-z0-9_]+$/;
const LABEL = /^[a-z_][a-z0-9_]*$/;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const FLOAT = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/;

function num(v) {
  return v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
}

/** Parse a label set `a="x",b="y"` strictly (escapes \\ \" \n only). */
function parseLabels(s, where) {
  const labels = [];
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    assert.ok(eq > i, `${where}: a label without a name`);
    const name = s.slice(i, eq);
    assert.match(name, LABEL, `${where}: label name ${JSON.stringify(name)}`);
    assert.equal(s[eq + 1], '"', `${where}: label ${name} value not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      assert.ok(j < s.length, `${where}: unterminated value of ${name}`);
      const c = s[j];
      if (c === '"') break;
      if (c === '\\') {
        const n = s[j + 1];
        assert.ok(n === '\\' || n === '"' || n === 'n', `${where}: bad escape \\${n}`);
        value += n === 'n' ? '\n' : n;
        j += 2;
      } else {
        assert.notEqual(c, '\n', `${where}: raw newline in a value`);
        value += c;
        j++;
      }
    }
    assert.ok(!labels.some((l) => l.name === name), `${where}: label ${name} twice`);
    labels.push({ name, value });
    j++;
    if (j < s.length) {
      assert.equal(s[j], ',', `${where}: labels not separated by a comma`);
      j++;
      assert.ok(j < s.length, `${where}: trailing comma`);
    }
    i = j;
  }
  return labels;
}

/** Parse the whole text strictly: families with HELP then TYPE, then only
 * their own samples; returns [{name, type, help, samples: [{name, labels, value}]}]. */
function parseStrict(text) {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  const families = [];
  let fam = null;
  const seenSamples = new Set();
  lines.forEach((line, k) => {
    const where = `line ${k + 1} ${JSON.stringify(line)}`;
    let m;
    if ((m = /^# HELP (\S+) (.+)$/.exec(line))) {
      assert.match(m[1], NAME, where);
      assert.ok(!families.some((f) => f.name === m[1]), `${where}: family ${m[1]} twice`);
      assert.ok(!/\\(?![\\n])/.test(m[2]), `${where}: bad escape in HELP`);
      fam = { name: m[1], help: m[2], type: null, samples: [] };
      families.push(fam);
      return;
    }
    if ((m = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line))) {
      assert.ok(fam && fam.name === m[1] && fam.type === null && fam.samples.length === 0, `${where}: TYPE not right after its HELP`);
      fam.type = m[2];
      return;
    }
    assert.ok(!line.startsWith('#'), `${where}: a comment that is neither HELP nor TYPE`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `${where}: not a sample line`);
    assert.ok(fam && fam.type, `${where}: a sample before any HELP/TYPE`);
    const [, name, ls, value] = m;
    const suffixes = fam.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    assert.ok(suffixes.some((s) => name === fam.name + s), `${where}: ${name} outside its family ${fam.name}`);
    assert.match(value, FLOAT, `${where}: value`);
    const labels = ls === undefined ? [] : parseLabels(ls, where);
    for (const l of labels) assert.doesNotMatch(l.value, UUID, `${where}: an id in a label`);
    const key = name + JSON.stringify(labels);
    assert.ok(!seenSamples.has(key), `${where}: the same sample twice`);
    seenSamples.add(key);
    fam.samples.push({ name, labels, value: num(value) });
  });
  for (const f of families) {
    assert.ok(f.type, `${f.name}: HELP without TYPE`);
    if (f.type === 'counter') {
      assert.match(f.name, /_total$/, `${f.name}: a counter ends in _total`);
      for (const s of f.samples) assert.ok(s.value >= 0 && Number.isFinite(s.value), `${f.name}: counter value ${s.value}`);
    } else {
      assert.doesNotMatch(f.name, /_total$/, `${f.name}: only counters end in _total`);
    }
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets cumulative with increasing le ending at +Inf, le the last label,
 * _count equal to the +Inf bucket, one _sum, per label set. */
function checkHistogram(f) {
  const groups = new Map();
  for (const s of f.samples) {
    const rest = s.labels.filter((l) => l.name !== 'le');
    const key = JSON.stringify(rest);
    if (!groups.has(key)) groups.set(key, { buckets: [], sum: null, count: null });
    const g = groups.get(key);
    if (s.name.endsWith('_bucket')) {
      assert.equal(s.labels.at(-1)?.name, 'le', `${f.name}: le is the last label`);
      g.buckets.push({ le: num(s.labels.at(-1).value), value: s.value });
    } else if (s.name.endsWith('_sum')) {
      assert.equal(g.sum, null, `${f.name}${key}: one _sum`);
      g.sum = s.value;
    } else {
      assert.equal(g.count, null, `${f.name}${key}: one _count`);
      g.count = s.value;
    }
  }
  for (const [key, g] of groups) {
    assert.ok(g.buckets.length >= 2, `${f.name}${key}: buckets`);
    for (let i = 1; i < g.buckets.length; i++) {
      assert.ok(g.buckets[i].le > g.buckets[i - 1].le, `${f.name}${key}: le increasing`);
      assert.ok(g.buckets[i].value >= g.buckets[i - 1].value, `${f.name}${key}: cumulative`);
    }
    assert.equal(g.buckets.at(-1).le, Infinity, `${f.name}${key}: the last bucket is +Inf`);
    assert.equal(g.count, g.buckets.at(-1).value, `${f.name}${key}: _count equals the +Inf bucket`);
    assert.ok(g.sum !== null && g.sum >= 0, `${f.name}${key}: _sum`);
  }
}

/** The metrics table of README.md: name -> {type, labels: Set}. */
async function readmeTable() {
  const text = await readFile(path.join(REPO, 'README.md'), 'utf8');
  const start = text.indexOf('\n### Metrics\n');
  assert.ok(start >= 0, 'README.md has a "### Metrics" section');
  const section = text.slice(start + 1).split(/\n#{2,3} /)[0];
  const rows = new Map();
  for (const line of section.split('\n')) {
    const m = /^\|\s*`(tokend_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|\s*([^|]*\S)\s*\|$/.exec(line);
    if (!m) continue;
    assert.ok(!rows.has(m[1]), `README: ${m[1]} documented twice`);
    const labels = new Set([...m[3].matchAll(/`([a-z_][a-z0-9_]*)`/g)].map((x) => x[1]));
    rows.set(m[1], { type: m[2], labels, words: m[3] });
  }
  assert.ok(rows.size > 0, 'README.md: the metrics table has rows');
  return rows;
}

async function scrapeStrict(t) {
  const r = await request(t, '/metrics');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parseStrict(r.text);
}

function checkDocumented(families, table) {
  for (const f of families) {
    const row = table.get(f.name);
    assert.ok(row, `${f.name} is not in the metrics table of README.md: add its row (name, type, labels, meaning)`);
    assert.equal(row.type, f.type, `${f.name}: README says ${row.type}`);
    for (const s of f.samples)
      for (const l of s.labels)
        if (!(f.type === 'histogram' && l.name === 'le'))
          assert.ok(row.labels.has(l.name), `${f.name}: label ${l.name} is not in its README row (${row.words})`);
  }
}

for (const backend of backends()) {
  describe(`metrics (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let table;
    before(async () => {
      table = await readmeTable();
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('every line of /metrics parses strictly and every series is in the README table', async () => {
      // requests of many routes and statuses, so that the sparse series show
      await request(t, '/ready');
      await request(t, '/no/such/route');
      await request(t, '/health', { method: 'POST' });
      await api(t, '/v1/whoami');
      await request(t, '/v1/whoami');
      await request(t, '/v1/whoami', { auth: 'Bearer tko_nope' });
      await request(t, '/v1/events/verify?x=%22%5C%0A');
      const families = await scrapeStrict(t);
      checkDocumented(families, table);
      const names = families.map((f) => f.name);
      for (const n of ['tokend_build_info', 'tokend_http_requests_total', 'tokend_http_request_duration_seconds', 'tokend_http_inflight', 'tokend_store_up', 'tokend_keyring_sealed',
        'tokend_http_parked', 'tokend_http_parked_total', 'tokend_http_streams', 'tokend_http_streams_total', 'tokend_tls_handshakes_total', 'tokend_tls_cert_expiry_seconds',
        'tokend_events_queued', 'tokend_events_written_total', 'tokend_events_dropped_total', 'tokend_events_batches_total', 'tokend_events_emit_wait_seconds_total'])
        assert.ok(names.includes(n), `${n} is exposed`);
      // TLS off: its series have no samples; the event writer has written the start event
      assert.deepEqual(families.find((f) => f.name === 'tokend_tls_handshakes_total').samples, []);
      assert.ok(families.find((f) => f.name === 'tokend_events_written_total').samples[0].value >= 1, 'the writer wrote events');
      const parkedTotal = families.find((f) => f.name === 'tokend_http_parked_total');
      assert.deepEqual(parkedTotal.samples.map((x) => x.labels[0].value), ['answered', 'timeout', 'stopped', 'refused']);
      // registration order: the node's series, then the HTTP layer's
      assert.ok(names.indexOf('tokend_build_info') < names.indexOf('tokend_http_requests_total'));
      const req = families.find((f) => f.name === 'tokend_http_requests_total');
      const has = (route, status) => req.samples.some((s) => s.labels.some((l) => l.name === 'route' && l.value === route) && s.labels.some((l) => l.name === 'status' && l.value === status));
      assert.ok(has('/ready', '200'), 'GET /ready 200 counted');
      assert.ok(has('none', '404'), 'no route 404 counted');
      assert.ok(has('/v1/whoami', '401'), 'GET /v1/whoami 401 counted');
      // the scrape in progress is in flight
      const inflight = families.find((f) => f.name === 'tokend_http_inflight');
      assert.ok(inflight.samples[0].value >= 1);
    });

    it('an uninitialized node exposes the same documented series, and they parse', async () => {
      const u = await startTokend({ backend, dev: false, allowNoRootToken: true });
      try {
        await request(u, '/v1/whoami');
        const families = await scrapeStrict(u);
        checkDocumented(families, table);
        const sealed = families.find((f) => f.name === 'tokend_keyring_sealed');
        assert.equal(sealed.samples[0].value, 1);
        const init = families.find((f) => f.name === 'tokend_keyring_initialized');
        assert.equal(init.samples[0].value, 0);
      } finally {
        await stopAndScan(u, seenSecrets(), { requireEvents: false });
      }
    });

    it('the README table names only real types and its labels are snake_case', () => {
      for (const [name, row] of table) {
        assert.match(name, NAME);
        for (const l of row.labels) assert.match(l, LABEL, `${name}: label ${l}`);
        if (row.type === 'counter') assert.match(name, /_total$/, `${name}: a counter ends in _total`);
      }
    });
  });
}
