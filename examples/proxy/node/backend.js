#!/usr/bin/env node
// A chat backend behind sockjsd's session proxy: Node's core modules only
// (http, crypto; fs and path for the page, util for the flags). The same
// behaviour and flags as ../python/backend.py; see ../README.md.
//
// Browsers speak SockJS to sockjsd (/chat); sockjsd calls this backend over
// HTTP, signed with the proxy secret:
//
//   POST {hooks}/connect   a session opens: accept (user, channels, messages) or reject
//   POST {hooks}/message   a batch of the session's messages: answer messages,
//                          subscribe/unsubscribe, close
//   POST {hooks}/close     the session ended
//   POST /webhook          sockjsd's events (user.online, user.offline, ...)
//
// and this backend calls sockjsd's API (/api/publish, /api/send) with the API
// key. It also serves the chat page at /.
//
//   node backend.js --secret S --api-key K [--listen 127.0.0.1:8000] [--sockjsd http://127.0.0.1:8081] ...
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { parseArgs } = require('node:util');

// --- signature check (the same as internal/sign/sign.go) --------------------

const SIGNATURE_HEADER = 'x-sockjsd-signature';
const TOLERANCE = 300; // seconds between the signature's t and our clock, either way

function mac(secret, ts, body) {
  return crypto.createHmac('sha256', secret).update(ts + '.').update(body).digest('hex');
}

// The header value sockjsd sends: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
function sign(secret, body, t) {
  const ts = String(t === undefined ? Math.floor(Date.now() / 1000) : Math.floor(t));
  return 't=' + ts + ',v1=' + mac(secret, ts, body);
}

// null when header signs body (a Buffer) with secret within tolerance, else why not.
function verify(secret, header, body, now = Date.now() / 1000, tolerance = TOLERANCE) {
  if (!header) return 'no signature';
  let ts = null;
  const sigs = [];
  for (const part of header.split(',')) {
    const p = part.trim();
    const eq = p.indexOf('=');
    if (eq < 0) return 'malformed signature';
    const key = p.slice(0, eq), value = p.slice(eq + 1);
    if (key === 't') ts = value;
    else if (key === 'v1') sigs.push(value);
  }
  if (ts === null || !/^[0-9]{1,12}$/.test(ts) || sigs.length === 0) return 'malformed signature';
  if (Math.abs(now - Number(ts)) > tolerance) return 'stale signature';
  const want = Buffer.from(mac(secret, ts, body));
  // Any v1 may match: sockjsd signs with the old and the new secret while
  // they rotate. timingSafeEqual takes the same time wherever they differ.
  for (const s of sigs) {
    const got = Buffer.from(s);
    if (got.length === want.length && crypto.timingSafeEqual(got, want)) return null;
  }
  return 'signature mismatch';
}

// --- the chat -----------------------------------------------------------------

// Who may log in: a user in this table with its password, or any other
// (well-formed) name with the password "secret". An example, not a user store.
const PASSWORDS = { alice: 'wonderland', bob: 'builder', carol: 'singer' };
const ANY_USER_PASSWORD = 'secret';

const NAME = /^[A-Za-z0-9_-]{1,32}$/; // user and room names
const LOBBY = 'lobby';
const PRESENCE = 'presence'; // the hub channel the online list goes to
const MAX_TEXT = 2000; // characters of one say or whisper
const SEEN_IDS = 10000; // webhook ids remembered for deduplication

const roomChannel = (room) => 'room.' + room;
const msg = (obj) => JSON.stringify(obj); // a message to a page: JSON text
const first = (v) => {
  if (Array.isArray(v)) v = v.length ? v[0] : '';
  return typeof v === 'string' ? v : '';
};

function safeEqual(a, b) {
  const x = crypto.createHash('sha256').update(a).digest();
  const y = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(x, y);
}

// null when (user, password) may log in, else the reject object.
function checkLogin(user, password) {
  if (!NAME.test(user)) return { code: 4002, reason: 'bad user name' };
  const want = Object.hasOwn(PASSWORDS, user) ? PASSWORDS[user] : ANY_USER_PASSWORD;
  if (!safeEqual(password, want)) return { code: 4001, reason: 'bad password' };
  return null;
}

class APIError extends Error {}

// sockjsd's server API, called with the API key.
class SockjsdAPI {
  constructor(base, key, timeoutMs = 5000) {
    this.base = base.replace(/\/+$/, '');
    this.key = key;
    this.timeoutMs = timeoutMs;
  }

  post(p, obj) {
    const body = Buffer.from(JSON.stringify(obj));
    const url = new URL(this.base + p);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': body.length,
          Authorization: 'Bearer ' + this.key,
        },
        timeout: this.timeoutMs,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (e) => reject(new APIError(p + ': ' + e.message)));
        res.on('end', () => {
          if (res.statusCode < 200 || res.statusCode > 299) {
            return reject(new APIError(p + ': status ' + res.statusCode));
          }
          try {
            const text = Buffer.concat(chunks).toString();
            resolve(text.trim() ? JSON.parse(text) : {});
          } catch (e) {
            reject(new APIError(p + ': ' + e.message));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => reject(new APIError(p + ': ' + e.message)));
      req.end(body);
    });
  }

  publish(channel, data) {
    return this.post('/api/publish', { channel, data });
  }

  // Sends text to every session of user on every node; resolves to how many.
  async sendUser(user, text) {
    const n = (await this.post('/api/send', { user, data: text })).sessions;
    return Number.isInteger(n) ? n : 0;
  }
}

// The chat's state: each session's user and room, who is online. Node runs
// one request at a time between awaits, so no lock is needed.
class Chat {
  constructor(api, log = () => {}) {
    this.api = api;
    this.log = log;
    this.sessions = new Map(); // session id -> {user, room}
    this.online = new Set(); // from user.online / user.offline webhooks
    this.seen = new Set(); // webhook ids, oldest first (insertion order)
  }

  onlineList(plus) {
    const users = new Set(this.online);
    if (plus) users.add(plus);
    return [...users].sort();
  }

  async connect(req) {
    const query = req.query !== null && typeof req.query === 'object' && !Array.isArray(req.query) ? req.query : {};
    const user = first(query.user), password = first(query.password);
    const reject = checkLogin(user, password);
    if (reject) {
      this.log(`connect ${req.session} refused: ${reject.reason}`);
      return { reject };
    }
    this.sessions.set(req.session, { user, room: LOBBY });
    this.log(`connect ${req.session}: ${user} via ${req.transport}`);
    const welcome = { type: 'welcome', user, room: LOBBY, online: this.onlineList(user) };
    return {
      user,
      meta: { room: LOBBY },
      channels: [roomChannel(LOBBY), PRESENCE],
      messages: [msg(welcome)],
    };
  }

  async message(req) {
    const sid = req.session;
    if (!this.sessions.has(sid)) this.sessions.set(sid, { user: req.user || '', room: LOBBY });
    const state = this.sessions.get(sid);
    const user = req.user || state.user;
    state.user = user;
    const startRoom = state.room;
    let room = startRoom;
    const out = [];
    let close = null;
    for (const text of req.messages) {
      if (close) break; // nothing after a quit
      let m = null;
      try { m = JSON.parse(text); } catch { /* not JSON */ }
      if (m === null || typeof m !== 'object' || Array.isArray(m)) {
        out.push(msg({ type: 'error', text: 'not a JSON object' }));
        continue;
      }
      if (m.type === 'join') {
        if (typeof m.room !== 'string' || !NAME.test(m.room)) {
          out.push(msg({ type: 'error', text: 'bad room name' }));
          continue;
        }
        room = m.room;
        out.push(msg({ type: 'joined', room, online: this.onlineList(user) }));
      } else if (m.type === 'say') {
        const t = m.text;
        if (typeof t !== 'string' || !t || [...t].length > MAX_TEXT) {
          out.push(msg({ type: 'error', text: `say needs a text of 1 to ${MAX_TEXT} characters` }));
          continue;
        }
        const line = { type: 'say', room, from: user, text: t, time: new Date().toISOString() };
        try {
          await this.api.publish(roomChannel(room), line);
        } catch (e) {
          this.log('publish: ' + e.message);
          out.push(msg({ type: 'error', text: 'could not say it: the hub is unavailable' }));
          continue;
        }
        // Joined in this same batch: sockjsd subscribes the session after
        // this answer, so it would miss its own line. Echo it directly.
        if (room !== startRoom) out.push(msg(line));
      } else if (m.type === 'whisper') {
        const to = m.to, t = m.text;
        if (typeof to !== 'string' || !NAME.test(to)) {
          out.push(msg({ type: 'error', text: 'whisper to whom?' }));
          continue;
        }
        if (typeof t !== 'string' || !t || [...t].length > MAX_TEXT) {
          out.push(msg({ type: 'error', text: `whisper needs a text of 1 to ${MAX_TEXT} characters` }));
          continue;
        }
        const line = { type: 'whisper', from: user, to, text: t, time: new Date().toISOString() };
        let n;
        try {
          n = await this.api.sendUser(to, msg(line));
        } catch (e) {
          this.log('send: ' + e.message);
          out.push(msg({ type: 'error', text: 'could not whisper: sockjsd is unavailable' }));
          continue;
        }
        if (n === 0) out.push(msg({ type: 'error', text: `${to} is not online` }));
        else if (to !== user) out.push(msg(line)); // to oneself, /api/send reached this session already
      } else if (m.type === 'echo') {
        // For tests and load: the same n back, with how many echoes this
        // session's backend has seen (in order, each once: n + 1 when the
        // client numbers them from 0).
        if (!Number.isSafeInteger(m.n)) {
          out.push(msg({ type: 'error', text: 'echo needs a whole number n' }));
          continue;
        }
        state.echoes = (state.echoes || 0) + 1;
        out.push(msg({ type: 'echo', n: m.n, seen: state.echoes }));
      } else if (m.type === 'who') {
        out.push(msg({ type: 'online', users: this.onlineList(user) }));
      } else if (m.type === 'quit') {
        close = { code: 4000, reason: 'bye' };
      } else {
        out.push(msg({ type: 'error', text: 'unknown message type' }));
      }
    }
    const answer = {};
    if (out.length) answer.messages = out;
    if (room !== startRoom) {
      // The net change of the batch: joining a, then b, subscribes b only;
      // joining away and back changes nothing.
      answer.subscribe = [roomChannel(room)];
      answer.unsubscribe = [roomChannel(startRoom)];
      if (this.sessions.has(sid)) this.sessions.get(sid).room = room;
    }
    if (close) answer.close = close;
    return answer;
  }

  async close(req) {
    this.sessions.delete(req.session);
    this.log(`close ${req.session}: ${req.user} ${req.code} ${req.reason}`);
    return {};
  }

  // Applies one event; resolves to [status, answer]. At least once: a
  // repeated id is acknowledged and dropped.
  async webhook(ev) {
    const id = ev.id;
    if (typeof id !== 'string' || !id) return [400, { error: 'event without id' }];
    if (this.seen.has(id)) return [200, { duplicate: true }];
    this.seen.add(id);
    while (this.seen.size > SEEN_IDS) this.seen.delete(this.seen.values().next().value);
    const kind = ev.type, user = ev.user;
    let changed = false;
    if ((kind === 'user.online' || kind === 'user.offline') && typeof user === 'string' && user) {
      if (kind === 'user.online') {
        changed = !this.online.has(user);
        this.online.add(user);
      } else {
        changed = this.online.has(user);
        this.online.delete(user);
      }
    }
    this.log(`webhook ${id} ${kind} ${user || ev.session}`);
    if (changed) {
      const event = kind === 'user.online' ? 'online' : 'offline';
      try {
        await this.api.publish(PRESENCE, { type: 'presence', event, user, online: this.onlineList() });
      } catch (e) {
        // Forget the id so that sockjsd's retry publishes again (the set
        // change is undone, and idempotent anyway).
        this.log('publish presence: ' + e.message);
        this.seen.delete(id);
        if (kind === 'user.online') this.online.delete(user);
        else this.online.add(user);
        return [502, { error: 'hub unavailable' }];
      }
    }
    return [200, {}];
  }
}

// --- HTTP ---------------------------------------------------------------------

const MAX_BODY = 1 << 20;
const PAGE_FILE = path.join(__dirname, '..', 'web', 'index.html');

const escapeHTML = (s) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#x27;' }[c]));

// The page with its configuration: the client script's URL in an attribute
// (HTML-escaped) and the config as JSON in a script (with <, >, & and the JS
// line separators escaped so that nothing ends the script).
function renderPage(template, config) {
  const js = JSON.stringify(config).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  return template.split('{{CLIENT_URL}}').join(escapeHTML(config.clientUrl)).split('{{CONFIG}}').join(js);
}

// null when a hook's body has the fields this backend relies on, else what is wrong.
function checkHook(p, req) {
  if (typeof req.session !== 'string' || !req.session) return 'session missing';
  if ('user' in req && typeof req.user !== 'string') return 'user is not a string';
  if (p.endsWith('/message') && !(Array.isArray(req.messages) && req.messages.every((m) => typeof m === 'string'))) {
    return 'messages is not a list of strings';
  }
  return null;
}

function reply(res, status, body, ctype = 'application/json') {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  res.writeHead(status, {
    'Content-Type': ctype,
    'Content-Length': buf.length,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : buf);
}

// Reads the body up to MAX_BODY; resolves to a Buffer, or null when too large.
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.removeAllListeners('data');
        req.resume(); // drop the rest
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function createApp(opts) {
  const log = opts.verbose ? (line) => process.stderr.write(line + '\n') : () => {};
  const prefix = opts.hookPrefix.replace(/^\/+|\/+$/g, '');
  const hookPrefix = prefix ? '/' + prefix : '';
  const publicURL = (opts.publicSockjsd || opts.sockjsd).replace(/\/+$/, '');
  const config = {
    sockjsUrl: publicURL + opts.service,
    clientUrl: opts.clientUrl || publicURL + '/sockjs-client/sockjs.min.js',
  };
  const template = fs.readFileSync(opts.page, 'utf8');
  const chat = new Chat(new SockjsdAPI(opts.sockjsd, opts.apiKey), log);
  const secret = Buffer.from(opts.secret);
  const webhookSecret = Buffer.from(opts.webhookSecret || opts.secret);
  const hooks = {
    [hookPrefix + '/connect']: (r) => chat.connect(r),
    [hookPrefix + '/message']: (r) => chat.message(r),
    [hookPrefix + '/close']: (r) => chat.close(r),
  };

  async function handle(req, res) {
    const p = new URL(req.url, 'http://x').pathname;
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (p === '/' || p === '/index.html') return reply(res, 200, renderPage(template, config), 'text/html; charset=utf-8');
      if (p === '/healthz') return reply(res, 200, { ok: true });
      return reply(res, 404, { error: 'not found' });
    }
    if (req.method !== 'POST') {
      res.shouldKeepAlive = false;
      return reply(res, 405, { error: 'method not allowed' });
    }
    if (p !== '/webhook' && !Object.hasOwn(hooks, p)) {
      res.shouldKeepAlive = false; // the body is not read
      return reply(res, 404, { error: 'not found' });
    }
    const body = await readBody(req);
    if (body === null) {
      res.shouldKeepAlive = false;
      return reply(res, 413, { error: 'body too large' });
    }
    const why = verify(p === '/webhook' ? webhookSecret : secret, req.headers[SIGNATURE_HEADER], body);
    if (why) {
      log(`${p} refused: ${why}`);
      return reply(res, 401, { error: why });
    }
    let r = null;
    try { r = JSON.parse(body.toString('utf8')); } catch { /* not JSON */ }
    if (r === null || typeof r !== 'object' || Array.isArray(r)) return reply(res, 400, { error: 'body is not a JSON object' });
    if (p === '/webhook') {
      const [status, answer] = await chat.webhook(r);
      return reply(res, status, answer);
    }
    const bad = checkHook(p, r);
    if (bad) return reply(res, 400, { error: bad });
    return reply(res, 200, await hooks[p](r));
  }

  const server = http.createServer((req, res) => {
    if (opts.verbose) res.on('finish', () => log(`${req.socket.remoteAddress} "${req.method} ${req.url}" ${res.statusCode}`));
    handle(req, res).catch((e) => {
      log('error: ' + (e && e.stack || e));
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  return { server, chat, config };
}

function parseFlags(argv) {
  const env = process.env;
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: env.CHAT_LISTEN || '127.0.0.1:8000' },
      sockjsd: { type: 'string', default: env.SOCKJSD_URL || 'http://127.0.0.1:8081' },
      'public-sockjsd': { type: 'string', default: env.SOCKJSD_PUBLIC_URL || '' },
      'client-url': { type: 'string', default: env.SOCKJS_CLIENT_URL || '' },
      service: { type: 'string', default: env.CHAT_SERVICE || '/chat' },
      'hook-prefix': { type: 'string', default: env.CHAT_HOOK_PREFIX || '/sockjs' },
      secret: { type: 'string', default: env.PROXY_SECRET || '' },
      'webhook-secret': { type: 'string', default: env.WEBHOOK_SECRET || '' },
      'api-key': { type: 'string', default: env.SOCKJSD_API_KEY || '' },
      page: { type: 'string', default: PAGE_FILE },
      verbose: { type: 'boolean', short: 'v', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: node backend.js --secret S --api-key K [flags]
  --listen host:port        (port 0: any free port) [CHAT_LISTEN] default 127.0.0.1:8000
  --sockjsd URL             sockjsd's base URL, for its API [SOCKJSD_URL] default http://127.0.0.1:8081
  --public-sockjsd URL      sockjsd's base URL as browsers reach it; default --sockjsd [SOCKJSD_PUBLIC_URL]
  --client-url URL          sockjs-client's URL; default <public sockjsd>/sockjs-client/sockjs.min.js [SOCKJS_CLIENT_URL]
  --service /chat           the SockJS service's prefix on sockjsd [CHAT_SERVICE]
  --hook-prefix /sockjs     path of the hooks: the base of -proxy /chat=http://host:port/sockjs [CHAT_HOOK_PREFIX]
  --secret S                sockjsd's -proxy-secret (required) [PROXY_SECRET]
  --webhook-secret S        the webhooks' secret; default --secret [WEBHOOK_SECRET]
  --api-key K               sockjsd's -hub-api-key [SOCKJSD_API_KEY]
  --page FILE               the page template
  -v, --verbose             log requests and events on stderr
`);
    process.exit(0);
  }
  const fail = (m) => { process.stderr.write('backend.js: ' + m + '\n'); process.exit(2); };
  if (!values.secret) fail('--secret (or PROXY_SECRET) is required: it is sockjsd\'s -proxy-secret');
  if (!values.service.startsWith('/')) fail('--service must start with /');
  return {
    listen: values.listen,
    sockjsd: values.sockjsd,
    publicSockjsd: values['public-sockjsd'],
    clientUrl: values['client-url'],
    service: values.service,
    hookPrefix: values['hook-prefix'],
    secret: values.secret,
    webhookSecret: values['webhook-secret'],
    apiKey: values['api-key'],
    page: values.page,
    verbose: values.verbose,
  };
}

function main() {
  let opts;
  try {
    opts = parseFlags(process.argv.slice(2));
  } catch (e) {
    process.stderr.write('backend.js: ' + e.message + '\n');
    process.exit(2);
  }
  const i = opts.listen.lastIndexOf(':');
  const host = opts.listen.slice(0, i) || '127.0.0.1';
  const port = Number(opts.listen.slice(i + 1));
  const { server } = createApp(opts);
  server.listen(port, host, () => {
    const a = server.address();
    // The first line on stdout: tests and run.sh read the address from it.
    process.stdout.write(`chat backend listening on http://${a.family === 'IPv6' ? '[' + a.address + ']' : a.address}:${a.port}/\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { sign, verify, checkLogin, Chat, SockjsdAPI, renderPage, createApp };

if (require.main === module) main();
