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
 *     reconnect: true,               // optional: reopen after a close we did not ask for;
 *                                    // true or {minDelay: 250, maxDelay: 5000} (ms)
 *     onopen: function (info) {},    // info: {transport, connectMs, attempt}
 *     onmessage: function (data) {},
 *     onclose: function (ev) {},     // ev: {code, reason, wasClean, reconnecting}
 *     onerror: function (err) {}
 *   });
 *   conn.send('hi');                 // false when not open
 *   conn.transport;                  // the transport in use, e.g. 'xhr-streaming'
 *   conn.close();
 *
 * Every callback is optional. A connection is one SockJS session at a time;
 * with reconnect on, each reopen is a new session (the server keeps no
 * state across them).
 */
(function (global) {
  'use strict';

  var CONNECTING = 'connecting', OPEN = 'open', CLOSED = 'closed';

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
      if (self.sock === sock) {
        call(opts.onmessage, e.data);
      }
    };
    sock.onclose = function (e) {
      if (self.sock !== sock) {
        return;
      }
      var again = !!self._reconnect && !self._userClosed;
      self.readyState = CLOSED;
      self.transport = null;
      call(opts.onclose, {code: e.code, reason: e.reason, wasClean: e.wasClean, reconnecting: again});
      if (again) {
        self._schedule();
      }
    };
  };

  // _schedule reopens after an exponential, jittered backoff, so that a
  // restarting server is not hit by every page at the same instant.
  Connection.prototype._schedule = function () {
    var self = this, p = this._reconnect;
    var d = Math.min(p.maxDelay, p.minDelay * Math.pow(2, this._failures));
    this._failures++;
    d = d / 2 + Math.random() * d / 2;
    this._timer = setTimeout(function () { self._open(); }, d);
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
      this.sock.close(code || 1000, reason || 'Normal closure');
    }
  };

  global.SockJSD = {
    connect: function (opts) { return new Connection(opts); },
    Connection: Connection
  };
}(typeof window !== 'undefined' ? window : this));
