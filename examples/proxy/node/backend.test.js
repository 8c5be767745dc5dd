// Tests of backend.js: the backend runs as its own process on a free loopback
// port, called as sockjsd would (signed hooks and webhooks), with a fake
// sockjsd API in this process recording what the backend publishes and sends.
// Run: node --test (in this directory). The same cases as
// ../python/test_backend.py.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');

const SECRET = 'test-proxy-secret';
const WEBHOOK_SECRET = 'test-webhook-secret';
const API_KEY = 'test-api-key';
const START_TIMEOUT_MS = 10000;

// Signs as internal/sign/sign.go does (written again here, not taken from
// backend.js, so that a mistake there is not copied into the check).
function signature(body, secret = SECRET, t = Math.floor(Date.now() / 1000)) {
  const h = crypto.createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
  return `t=${t},v1=${h}`;
}
const now = () => Math.floor(Date.now() / 1000);

// sockjsd's API as far as the backend uses it: /api/publish, /api/send.
const api = {
  calls: [], // {path, body}
  sessions: {}, // user -> sessions /api/send reaches
  failPublish: false,
  published(channel) {
    return this.calls.filter((c) => c.path === '/api/publish' && (!channel || c.body.channel === channel)).map((c) => c.body);
  },
  sent() {
    return this.calls.filter((c) => c.path === '/api/send').map((c) => c.body);
  },
};
const apiServer = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const answer = (status, obj) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (req.headers.authorization !== 'Bearer ' + API_KEY) return answer(401, { error: 'unauthorized' });
    const body = JSON.parse(Buffer.concat(chunks).toString());
    if (req.url === '/api/publish' && api.failPublish) return answer(503, { error: 'unavailable' }); // not recorded
    api.calls.push({ path: req.url, body });
    if (req.url === '/api/publish') return answer(200, { seq: api.calls.length });
    if (req.url === '/api/send') return answer(200, { sessions: api.sessions[body.user] || 0 });
    answer(404, { error: 'not found' });
  });
});

let proc, base, stderr = '';

before(async () => {
  await new Promise((resolve) => apiServer.listen(0, '127.0.0.1', resolve));
  const apiURL = `http://127.0.0.1:${apiServer.address().port}`;
  proc = spawn(process.execPath, [path.join(__dirname, 'backend.js'), '-v',
    '--listen', '127.0.0.1:0', '--sockjsd', apiURL, '--public-sockjsd', 'http://sockjsd.test:8081',
    '--secret', SECRET, '--webhook-secret', WEBHOOK_SECRET, '--api-key', API_KEY],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr.on('data', (c) => { stderr += c; });
  // The first stdout line names the address; wait for it with a deadline.
  base = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('backend did not start within 10s: ' + out + stderr)), START_TIMEOUT_MS);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`backend exited (${code}): ${stderr}`)); });
    proc.stdout.on('data', (c) => {
      out += c;
      const m = /(http:\/\/\S+?)\/?\n/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
});

after(async () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    proc.removeAllListeners('exit');
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
  await new Promise((resolve) => apiServer.close(resolve));
  if (process.env.CHAT_TEST_LOG) process.stderr.write(stderr);
});

// --- helpers ---

let n = 0;
const unique = (prefix) => prefix + ++n;

// POSTs body (an object, or a string as is), signed unless sig is given;
// resolves to [status, decoded answer].
function post(p, body, { sig, secret = SECRET } = {}) {
  const buf = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const headers = { 'Content-Type': 'application/json', 'Content-Length': buf.length };
  sig = sig === undefined ? signature(buf, secret) : sig;
  if (sig) headers['X-Sockjsd-Signature'] = sig;
  return request('POST', p, headers, buf);
}

function request(method, p, headers = {}, buf) {
  return new Promise((resolve, reject) => {
    const req = http.request(base + p, { method, headers, timeout: 10000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const isJSON = (res.headers['content-type'] || '').startsWith('application/json');
        resolve([res.statusCode, isJSON ? JSON.parse(text || '{}') : text, res.headers]);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(buf);
  });
}

async function connect(user = 'alice', password = 'wonderland', session = unique('s')) {
  const [status, answer] = await post('/sockjs/connect', {
    session, service: '/chat', transport: 'xhr-polling', remote: '203.0.113.7',
    headers: { 'User-Agent': 'test' }, query: { user, password },
  });
  assert.equal(status, 200);
  return [session, answer];
}

async function message(session, user, ...msgs) {
  const [status, answer] = await post('/sockjs/message', {
    session, user, messages: msgs.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))),
  });
  assert.equal(status, 200);
  return answer;
}

function event(type, user, id = unique('ev'), secret = WEBHOOK_SECRET) {
  return post('/webhook', { id, type, time: '2026-12-04T21:00:00Z', user, session: 'x' }, { secret })
    .then(([status, answer]) => [status, answer]);
}

const parse = (answer) => (answer.messages || []).map((m) => JSON.parse(m));

// --- signatures ---

test('signature matches the Go reference', () => {
  // internal/sign.Value([]byte("s3cret"), time.Unix(1700000000, 0), body)
  assert.equal(signature('{"session":"x"}', 's3cret', 1700000000),
    't=1700000000,v1=b7ef79db851ac427d2dea20fa8c0f76a6bee8726b5fc58dfade3830c86ca5cfb');
});

test('good signature: 200', async () => {
  const [status, answer] = await post('/sockjs/close', { session: 'nope', user: 'u', code: 1000, reason: '' });
  assert.deepEqual([status, answer], [200, {}]);
});

test('tampered body: 401', async () => {
  const body = JSON.stringify({ session: 's', user: 'u', code: 1000, reason: '' });
  const [status, answer] = await post('/sockjs/close', body.replace('1000', '1001'), { sig: signature(body) });
  assert.deepEqual([status, answer.error], [401, 'signature mismatch']);
});

test('stale timestamp: 401', async () => {
  const body = '{"session":"s","user":"u","code":1000,"reason":""}';
  for (const t of [now() - 301, now() + 301]) {
    const [status, answer] = await post('/sockjs/close', body, { sig: signature(body, SECRET, t) });
    assert.deepEqual([status, answer.error], [401, 'stale signature'], String(t));
  }
  const [status] = await post('/sockjs/close', body, { sig: signature(body, SECRET, now() - 200) });
  assert.equal(status, 200);
});

test('missing or malformed signature: 401', async () => {
  for (const sig of ['', 'v1=abc', 't=123', 't=abc,v1=00', 'garbage']) {
    const [status] = await post('/sockjs/close', '{"session":"s"}', { sig });
    assert.equal(status, 401, sig);
  }
});

test('wrong secret: 401; hooks and webhooks have their own', async () => {
  let [status] = await post('/sockjs/close', { session: 's' }, { secret: 'other' });
  assert.equal(status, 401);
  [status] = await event('session.opened', 'u', undefined, SECRET);
  assert.equal(status, 401);
});

test('several v1: any one matching passes', async () => {
  const body = '{"session":"s","user":"u","code":1000,"reason":""}';
  const [t, v1] = signature(body).split(',');
  const [status] = await post('/sockjs/close', body, { sig: `${t},v1=${'0'.repeat(64)},${v1}` });
  assert.equal(status, 200);
});

test('not JSON: 400; unknown path: 404', async () => {
  assert.equal((await post('/sockjs/message', 'not json'))[0], 400);
  assert.equal((await post('/sockjs/nope', {}))[0], 404);
});

test('malformed hooks: 400', async () => {
  for (const [p, body] of [
    ['/sockjs/connect', { query: { user: 'alice', password: 'wonderland' } }],
    ['/sockjs/connect', { session: ['x'] }],
    ['/sockjs/message', { session: 's', user: 5, messages: [] }],
    ['/sockjs/message', { session: 's', messages: 'abc' }],
    ['/sockjs/message', { session: 's', messages: [1, 2] }],
    ['/sockjs/close', { session: '' }],
  ]) {
    const [status] = await post(p, body);
    assert.equal(status, 400, JSON.stringify(body));
  }
  // A query that is not an object is no login.
  const [status, answer] = await post('/sockjs/connect', { session: 's', query: ['alice'] });
  assert.deepEqual([status, answer.reject.code], [200, 4002]);
});

// --- connect ---

test('connect with a bad password: reject 4001', async () => {
  let [, answer] = await connect('alice', 'wrong');
  assert.deepEqual(answer, { reject: { code: 4001, reason: 'bad password' } });
  [, answer] = await connect('bob', 'secret'); // a table user cannot use the catch-all
  assert.equal(answer.reject.code, 4001);
  [, answer] = await connect('alice', '');
  assert.equal(answer.reject.code, 4001);
});

test('connect with a bad user name: reject 4002', async () => {
  for (const user of ['', 'a b', 'x'.repeat(33), '<script>']) {
    const [, answer] = await connect(user, 'secret');
    assert.deepEqual(answer.reject, { code: 4002, reason: 'bad user name' }, user);
  }
});

test('good login: user, channels, welcome', async () => {
  let [, answer] = await connect('alice', 'wonderland');
  assert.equal(answer.user, 'alice');
  assert.deepEqual(answer.channels, ['room.lobby', 'presence']);
  assert.deepEqual(answer.meta, { room: 'lobby' });
  const [welcome] = parse(answer);
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.user, 'alice');
  assert.ok(welcome.online.includes('alice'));
  [, answer] = await connect('zed', 'secret'); // any other name logs in with "secret"
  assert.equal(answer.user, 'zed');
});

// --- messages ---

test('message batch', async () => {
  const [sid] = await connect('alice', 'wonderland');
  api.sessions.bob = 2;
  const beforePub = api.published().length, beforeSent = api.sent().length;
  let answer = await message(sid, 'alice',
    { type: 'say', text: 'hi lobby' },
    { type: 'join', room: 'kitchen' },
    { type: 'say', text: 'hi kitchen' },
    { type: 'whisper', to: 'bob', text: 'psst' },
    { type: 'who' },
    'not json',
    { type: 'dance' });
  const msgs = parse(answer);
  assert.deepEqual(msgs.map((m) => m.type), ['joined', 'say', 'whisper', 'online', 'error', 'error']);
  assert.equal(msgs[0].room, 'kitchen');
  // The say after the join is echoed: the subscription comes after the answer.
  assert.deepEqual([msgs[1].room, msgs[1].text, msgs[1].from], ['kitchen', 'hi kitchen', 'alice']);
  assert.deepEqual([msgs[2].from, msgs[2].to, msgs[2].text], ['alice', 'bob', 'psst']);
  assert.deepEqual(answer.subscribe, ['room.kitchen']);
  assert.deepEqual(answer.unsubscribe, ['room.lobby']);
  assert.equal(answer.close, undefined);
  // Published in order, to the room each say was in.
  const pubs = api.published().slice(beforePub);
  assert.deepEqual(pubs.map((p) => [p.channel, p.data.text, p.data.from]),
    [['room.lobby', 'hi lobby', 'alice'], ['room.kitchen', 'hi kitchen', 'alice']]);
  const sent = api.sent().slice(beforeSent);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].user, 'bob');
  assert.deepEqual(JSON.parse(sent[0].data), msgs[2]);
  // The next batch starts in the kitchen: a say there is not echoed.
  answer = await message(sid, 'alice', { type: 'say', text: 'still here' });
  assert.deepEqual(answer, {});
  assert.equal(api.published().at(-1).channel, 'room.kitchen');
});

test('join and back changes nothing', async () => {
  const [sid] = await connect('carol', 'singer');
  let answer = await message(sid, 'carol', { type: 'join', room: 'a' }, { type: 'join', room: 'lobby' });
  assert.equal(answer.subscribe, undefined);
  assert.equal(answer.unsubscribe, undefined);
  assert.equal(answer.messages.length, 2);
  answer = await message(sid, 'carol', { type: 'join', room: 'no good' });
  assert.equal(parse(answer)[0].type, 'error');
});

test('whisper to nobody', async () => {
  const [sid] = await connect('alice', 'wonderland');
  const answer = await message(sid, 'alice', { type: 'whisper', to: 'ghost', text: 'boo' });
  assert.deepEqual(parse(answer)[0], { type: 'error', text: 'ghost is not online' });
});

test('echo: the same n, with the count of echoes seen', async () => {
  const [sid] = await connect('dora', 'secret');
  let answer = await message(sid, 'dora', { type: 'echo', n: 0 }, { type: 'echo', n: 1 });
  assert.deepEqual(parse(answer), [{ type: 'echo', n: 0, seen: 1 }, { type: 'echo', n: 1, seen: 2 }]);
  // Counted per session, across batches.
  answer = await message(sid, 'dora', { type: 'echo', n: 7 });
  assert.deepEqual(parse(answer), [{ type: 'echo', n: 7, seen: 3 }]);
  const [other] = await connect('dora', 'secret');
  answer = await message(other, 'dora', { type: 'echo', n: 0 });
  assert.equal(parse(answer)[0].seen, 1);
  for (const bad of ['1', 1.5, true, null]) {
    answer = await message(sid, 'dora', { type: 'echo', n: bad });
    assert.deepEqual(parse(answer), [{ type: 'error', text: 'echo needs a whole number n' }], String(bad));
  }
  answer = await message(sid, 'dora', { type: 'echo', n: 8 });
  assert.deepEqual(parse(answer), [{ type: 'echo', n: 8, seen: 4 }]);
});

test('quit closes 4000', async () => {
  const [sid] = await connect('alice', 'wonderland');
  const before = api.published().length;
  const answer = await message(sid, 'alice', { type: 'quit' }, { type: 'say', text: 'after' });
  assert.deepEqual(answer.close, { code: 4000, reason: 'bye' });
  assert.equal(api.published().length, before); // nothing after the quit
  const [status] = await post('/sockjs/close', { session: sid, user: 'alice', code: 4000, reason: 'bye' });
  assert.equal(status, 200);
});

test('hub unavailable: an error to the sender', async () => {
  const [sid] = await connect('alice', 'wonderland');
  api.failPublish = true;
  let answer;
  try {
    answer = await message(sid, 'alice', { type: 'say', text: 'x' });
  } finally {
    api.failPublish = false;
  }
  assert.equal(parse(answer)[0].type, 'error');
});

// --- webhooks ---

const presenceOf = (user) => api.published('presence').map((p) => p.data).filter((d) => d.user === user);

test('webhook dedupe', async () => {
  const user = unique('dave'), id = unique('ev');
  for (const want of [{}, { duplicate: true }, { duplicate: true }]) {
    assert.deepEqual(await event('user.online', user, id), [200, want]);
  }
  let pubs = presenceOf(user);
  assert.equal(pubs.length, 1);
  assert.equal(pubs[0].event, 'online');
  assert.ok(pubs[0].online.includes(user));
  // The online list reaches a new session's welcome.
  const [, answer] = await connect('zed', 'secret');
  assert.ok(parse(answer)[0].online.includes(user));
  // Offline, twice under one id: one publish.
  const off = unique('ev');
  assert.deepEqual(await event('user.offline', user, off), [200, {}]);
  assert.deepEqual(await event('user.offline', user, off), [200, { duplicate: true }]);
  pubs = presenceOf(user);
  assert.deepEqual(pubs.map((p) => p.event), ['online', 'offline']);
  assert.ok(!pubs[1].online.includes(user));
});

test('webhook retried after a hub failure', async () => {
  const user = unique('erin'), id = unique('ev');
  api.failPublish = true;
  let status;
  try {
    [status] = await event('user.online', user, id);
  } finally {
    api.failPublish = false;
  }
  assert.equal(status, 502);
  // sockjsd retries the same event: it is applied, not taken as a repeat.
  assert.deepEqual(await event('user.online', user, id), [200, {}]);
  assert.deepEqual(presenceOf(user).map((p) => p.event), ['online']);
});

test('webhook with a bad or stale signature: 401', async () => {
  const body = JSON.stringify({ id: 'e1', type: 'user.online', user: 'mallory' });
  let [status] = await post('/webhook', body, { sig: signature(body, WEBHOOK_SECRET).replace('v1=', 'v1=0') });
  assert.equal(status, 401);
  [status] = await post('/webhook', body, { sig: signature(body, WEBHOOK_SECRET, now() - 400) });
  assert.equal(status, 401);
  assert.deepEqual(presenceOf('mallory'), []);
});

test('webhook without id: 400', async () => {
  const [status] = await post('/webhook', { type: 'user.online', user: 'x' }, { secret: WEBHOOK_SECRET });
  assert.equal(status, 400);
});

// --- the page ---

test('the page', async () => {
  const [status, page, headers] = await request('GET', '/?transports=xhr-polling');
  assert.equal(status, 200);
  assert.match(headers['content-type'], /^text\/html/);
  assert.ok(page.includes('<script src="http://sockjsd.test:8081/sockjs-client/sockjs.min.js"></script>'));
  assert.ok(page.includes('"sockjsUrl":"http://sockjsd.test:8081/chat"'));
  assert.ok(page.includes("params.get('transports')"));
  assert.ok(!page.includes('{{'));
});
