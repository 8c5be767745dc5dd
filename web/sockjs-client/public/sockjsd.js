/*
 * sockjsd.js: a small wrapper around sockjs-client (loaded before it from
 * /sockjs-client/sockjs.min.js). Plain ES5, no build step.
 *
 *   var conn = SockJSD.connect({
 *     url: '/echo',                  // required; relative URLs resolve against the page
 *     transports: ['xhr-polling'],   // optional: one name or a list; omitted = automatic
 *     timeout: 3000,                 // optional: least ms a transport gets to open before the
 *                                    // client tries the next one (sockjs-client's `timeout`;
 *                                    // by default it derives it from the /info round trip)
 *     reconnect: true,               // optional: reopen after a close we did not ask for,
 *                                    // after a capped exponential backoff with jitter;
 *                                    // true or {minDelay: 250, maxDelay: 5000} (ms)
 *     onopen: function (info) {},    // info: {transport, connectMs, attempt}
 *     onmessage: function (data) {},
 *     onclose: function (ev) {},     // ev: {code, reason, wasClean, reconnecting, retryMs}
 *     onrtt: function (ms) {},       // the round trip the server measured (service ping)
 *     onerror: function (err) {}
 *   });
 *   conn.send('hi');                 // false when not open
 *   conn.readyState;                 // 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED, as WebSocket
 *   conn.bufferedAmount;             // bytes queued by send() and not yet handed to the network
 *   conn.transport;                  // the transport in use, e.g. 'xhr-streaming'
 *   conn.rtt;                        // last measured round trip in ms, or null
 *   conn.close();
 *
 * Every callback is optional. A connection is one SockJS session at a time;
 * with reconnect on, each reopen is a new session (the server keeps no
 * state across them).
 *
 * Service ping: a server with transport.Options.PingInterval sends each
 * session "\u0000sockjsd-ping:<nonce>:<seq>:<last rtt µs>" as its first
 * message and then periodically. This wrapper answers
 * "\u0000sockjsd-pong:<nonce>:<seq>" and never passes a ping to the page. A
 * message is a ping only if it is the session's first message or carries
 * the first one's nonce, so application messages are never taken for one.
 */
(function (global) {
  'use strict';

  // readyState values, as the browser's WebSocket.
  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  var PING = '\u0000sockjsd-ping:', PONG = '\u0000sockjsd-pong:';

  // utf8Length is the size of s on the wire, as WebSocket's bufferedAmount
  // counts it.
  function utf8Length(s) {
    var n = 0, i, c;
    for (i = 0; i < s.length; i++) {
      c = s.charCodeAt(i);
      if (c < 0x80) { n += 1; } else if (c < 0x800) { n += 2; } else if (c >= 0xd800 && c < 0xdc00) { n += 4; i++; } else { n += 3; }
    }
    return n;
  }

  function now() {
    return global.performance && global.performance.now ? global.performance.now() : new Date().getTime();
  }

  function call(fn, arg) {
    if (!fn) {
      return;
    }
    try {
      fn(arg);
    } catch (e) {
      // A throwing callback must not break the connection's bookkeeping.
      if (global.console && global.console.error) {
        global.console.error('sockjsd: callback failed', e);
      }
    }
  }

  // resolve makes a relative URL absolute against the page, as sockjs-client
  // requires an absolute one.
  function resolve(url) {
    var a = global.document.createElement('a');
    a.href = url;
    return a.href;
  }

  function reconnectPolicy(r) {
    if (!r) {
      return null;
    }
    var p = {minDelay: 250, maxDelay: 5000};
    if (typeof r === 'object') {
      if (r.minDelay > 0) { p.minDelay = r.minDelay; }
      if (r.maxDelay > 0) { p.maxDelay = r.maxDelay; }
    }
    return p;
  }

  function Connection(opts) {
    if (!opts || !opts.url) {
      throw new Error('SockJSD.connect: options.url is required');
    }
    this.url = resolve(opts.url);
    this.transport = null;
    this.connectMs = null;
    this.rtt = null;
    this.readyState = CONNECTING;
    this.attempt = 0;
    this.sock = null;
    this._opts = opts;
    this._reconnect = reconnectPolicy(opts.reconnect);
    this._failures = 0;
    this._timer = null;
    this._userClosed = false;
    this._open();
  }

  Connection.prototype._sockOptions = function () {
    var o = {}, extra = this._opts.sockjs || {}, k;
    for (k in extra) {
      if (Object.prototype.hasOwnProperty.call(extra, k)) {
        o[k] = extra[k];
      }
    }
    if (this._opts.transports) {
      o.transports = this._opts.transports;
    }
    if (this._opts.timeout > 0) {
      o.timeout = this._opts.timeout;
    }
    return o;
  };

  Connection.prototype._open = function () {
    var self = this, opts = this._opts, SockJS = opts.SockJS || global.SockJS, sock, started;
    this._timer = null;
    this.attempt++;
    this.readyState = CONNECTING;
    this.transport = null;
    this._pingNonce = null;
    this._received = 0;
    if (!SockJS) {
      this.readyState = CLOSED;
      call(opts.onerror, new Error('sockjs-client is not loaded (is /sockjs-client/sockjs.min.js served?)'));
      return;
    }
    started = now();
    try {
      sock = new SockJS(this.url, null, this._sockOptions());
    } catch (e) {
      this.readyState = CLOSED;
      call(opts.onerror, e);
      return;
    }
    this.sock = sock;
    sock.onopen = function () {
      if (self.sock !== sock) {
        return;
      }
      self.readyState = OPEN;
      self.transport = sock.transport;
      self.connectMs = now() - started;
      self._failures = 0;
      call(opts.onopen, {transport: self.transport, connectMs: self.connectMs, attempt: self.attempt});
    };
    sock.onmessage = function (e) {
      if (self.sock === sock && !self._ping(e.data)) {
        call(opts.onmessage, e.data);
      }
    };
    sock.onclose = function (e) {
      if (self.sock !== sock) {
        return;
      }
      var again = !!self._reconnect && !self._userClosed, delay = again ? self._backoff() : null;
      self.readyState = CLOSED;
      self.transport = null;
      call(opts.onclose, {code: e.code, reason: e.reason, wasClean: e.wasClean, reconnecting: again, retryMs: delay});
      if (again && !self._userClosed) {
        self._timer = setTimeout(function () { self._open(); }, delay);
      }
    };
  };

  // _ping answers a service ping and reports whether data was one.
  Connection.prototype._ping = function (data) {
    var first = this._received++ === 0, parts;
    if (typeof data !== 'string' || data.lastIndexOf(PING, 0) !== 0) {
      return false;
    }
    parts = data.slice(PING.length).split(':');
    if (parts.length !== 3 || !(first || parts[0] === this._pingNonce)) {
      return false;
    }
    this._pingNonce = parts[0];
    this.sock.send(PONG + parts[0] + ':' + parts[1]);
    if (+parts[2] > 0) {
      this.rtt = +parts[2] / 1000;
      call(this._opts.onrtt, this.rtt);
    }
    return true;
  };

  // _backoff is the delay before the next reopen: exponential in the
  // failures so far, capped at maxDelay, with jitter (half to all of it)
  // so that a restarting server is not hit by every page at the same
  // instant.
  Connection.prototype._backoff = function () {
    var p = this._reconnect;
    var d = Math.min(p.maxDelay, p.minDelay * Math.pow(2, this._failures));
    this._failures++;
    return d / 2 + Math.random() * d / 2;
  };

  // send queues data on the open session; it returns false (and sends
  // nothing) when the connection is not open.
  Connection.prototype.send = function (data) {
    if (this.readyState !== OPEN || !this.sock) {
      return false;
    }
    this.sock.send(data);
    return true;
  };

  // close ends the session and stops reconnecting.
  Connection.prototype.close = function (code, reason) {
    this._userClosed = true;
    if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    if (this.sock && this.readyState !== CLOSED) {
      this.readyState = CLOSING;
      this.sock.close(code || 1000, reason || 'Normal closure');
    }
  };

  // bufferedAmount is what send() queued and the transport has not yet
  // handed to the network, in bytes: the websocket's own bufferedAmount,
  // or the messages sockjs-client holds for its next send request. It
  // reads sockjs-client 1.6.1's internals (the pinned version).
  Object.defineProperty(Connection.prototype, 'bufferedAmount', {
    get: function () {
      var t = this.sock && this.sock._transport, n = 0, i;
      if (!t) {
        return 0;
      }
      if (t.ws && typeof t.ws.bufferedAmount === 'number') {
        return t.ws.bufferedAmount;
      }
      for (i = 0; t.sendBuffer && i < t.sendBuffer.length; i++) {
        n += utf8Length(t.sendBuffer[i]);
      }
      return n;
    }
  });

  Connection.CONNECTING = Connection.prototype.CONNECTING = CONNECTING;
  Connection.OPEN = Connection.prototype.OPEN = OPEN;
  Connection.CLOSING = Connection.prototype.CLOSING = CLOSING;
  Connection.CLOSED = Connection.prototype.CLOSED = CLOSED;

  global.SockJSD = {
    connect: function (opts) { return new Connection(opts); },
    Connection: Connection,
    CONNECTING: CONNECTING,
    OPEN: OPEN,
    CLOSING: CLOSING,
    CLOSED: CLOSED
  };
}(typeof window !== 'undefined' ? window : this));
