/*
 * hub-client.js: the hub's protocol over SockJSD.connect (load
 * /sockjs-client/sockjs.min.js, /sockjsd.js, then this). Plain ES5.
 * Documented in docs/hub.md (web's TestHubClientDocumented keeps the two
 * in step); examples/hub/index.html is a whole page.
 *
 *   var hub = SockJSHub.connect({
 *     url: '/hub',                    // a token goes in the query: '/hub?token=…'
 *     transports: ['xhr-polling'],    // optional, as SockJSD.connect
 *     reconnect: true,                // optional; subscriptions are renewed on every reopen
 *     onopen: function (info) {},     // {transport, connectMs}
 *     onmessage: function (m) {},     // {channel, seq, data}
 *     onevent: function (m) {},       // every other server message: subscribed, published, error…
 *     onreset: function (r) {},       // {channel, seq}: messages were missed (history did not reach
 *                                     // back far enough, or the channel started again): reload the
 *                                     // channel's state; the messages after seq follow. Called on a
 *                                     // resubscribe and, unasked, in the middle of a live channel
 *     onrtt: function (ms) {},        // the round trip the server measured with its last ping
 *     onrefresh: function (r) {},     // {exp}: the server took the token of hub.refresh
 *     onclose: function (ev) {}
 *   });
 *   hub.subscribe('chat.lobby');
 *   hub.publish('chat.lobby', {text: 'hi'});
 *   hub.unsubscribe('chat.lobby');
 *   hub.rpc('method', data, function (err, result) {});  // with the server's -hub-proxy
 *   hub.refresh(newToken);            // before the session's token expires (close 3014)
 *   hub.transport; hub.close();
 *
 * Pings ({"op":"ping","id":N}) are answered with pongs at once, so the
 * server measures this page's round trip on its transport; from the
 * second ping on they carry the last one's ("rtt", ms), passed to onrtt
 * and kept in hub.rtt. The hub's round trip comes from these JSON pings
 * only: /hub sends no sockjsd.js service ping.
 *
 * Every reopen resumes each subscription where it left off: the subscribe
 * carries the last seq seen (and the channel's epoch), and the server
 * replays what was missed from the channel's history before live messages
 * ("recovered":true). When history no longer reaches back that far, the
 * server says "recovered":false and onreset is called. hub.channels[ch]
 * is {seq, epoch}: the position of the last message seen.
 */
(function (global) {
  'use strict';

  function Hub(opts) {
    var self = this;
    this.channels = {};
    this.transport = null;
    this.rtt = null;
    this.exp = null;
    this._opts = opts;
    this._rpcs = {};
    this._rpcSeq = 0;
    this._conn = global.SockJSD.connect({
      url: opts.url || '/hub',
      transports: opts.transports,
      timeout: opts.timeout,
      reconnect: opts.reconnect,
      onopen: function (info) {
        var ch;
        self.transport = info.transport;
        for (ch in self.channels) {
          if (Object.prototype.hasOwnProperty.call(self.channels, ch)) {
            self._send(self._subscribeMsg(ch));
          }
        }
        if (opts.onopen) { opts.onopen(info); }
      },
      onmessage: function (raw) { self._receive(raw); },
      onclose: function (ev) {
        var id, rpcs = self._rpcs;
        self.transport = null;
        // An rpc's answer cannot outlive its session.
        self._rpcs = {};
        for (id in rpcs) {
          if (Object.prototype.hasOwnProperty.call(rpcs, id)) {
            self._call(rpcs[id], {code: 'closed', message: 'the session closed'}, null);
          }
        }
        if (opts.onclose) { opts.onclose(ev); }
      },
      onerror: opts.onerror
    });
  }

  Hub.prototype._send = function (obj) {
    return this._conn.send(JSON.stringify(obj));
  };

  Hub.prototype._subscribeMsg = function (ch) {
    var st = this.channels[ch], m = {op: 'subscribe', channel: ch};
    if (st.seq !== null) {
      m.since = st.seq;
      if (st.epoch) { m.epoch = st.epoch; }
    }
    return m;
  };

  Hub.prototype._receive = function (raw) {
    var m, st, cb;
    try {
      m = JSON.parse(raw);
    } catch (e) {
      return;
    }
    if (m.op === 'ping') {
      this._send({op: 'pong', id: m.id});
      if (typeof m.rtt === 'number') {
        this.rtt = m.rtt;
        if (this._opts.onrtt) {
          // A throwing callback must not stop the pong above or the
          // messages after this one.
          try { this._opts.onrtt(m.rtt); } catch (e) { setTimeout(function () { throw e; }, 0); }
        }
      }
      return;
    }
    if (m.op === 'rpc_result') {
      cb = Object.prototype.hasOwnProperty.call(this._rpcs, m.id) ? this._rpcs[m.id] : null;
      if (cb) {
        delete this._rpcs[m.id];
        this._call(cb, m.error || null, m.error ? null : m.data);
      }
      return;
    }
    if (m.op === 'refreshed') {
      this.exp = m.exp;
      if (this._opts.onrefresh) { this._call(this._opts.onrefresh, {exp: m.exp}); }
    }
    st = m.channel !== undefined && Object.prototype.hasOwnProperty.call(this.channels, m.channel) ? this.channels[m.channel] : null;
    if (m.op === 'message') {
      if (st) { st.seq = m.seq; }
      if (this._opts.onmessage) { this._opts.onmessage({channel: m.channel, seq: m.seq, data: m.data}); }
      return;
    }
    if (m.op === 'subscribed' && st) {
      if (m.epoch) { st.epoch = m.epoch; }
      // recovered:true: the missed messages follow and move seq on;
      // otherwise start from the position given: the channel's now, or
      // (unasked, mid-stream) the one just before the next message.
      if (m.recovered !== true) { st.seq = m.seq; }
      if (m.recovered === false && this._opts.onreset) { this._opts.onreset({channel: m.channel, seq: m.seq}); }
    }
    if (m.op === 'unsubscribed' && st) {
      // Unasked: the server ended it (a refresh whose token does not
      // allow the channel): a reopen must not subscribe again.
      delete this.channels[m.channel];
    }
    if (this._opts.onevent) { this._opts.onevent(m); }
  };

  // _call runs a callback of the page's: one that throws must not stop
  // the messages after this one.
  Hub.prototype._call = function (f, a, b) {
    try { f(a, b); } catch (e) { setTimeout(function () { throw e; }, 0); }
  };

  // subscribe remembers the channel and where it stands, so that a
  // reconnect resumes it.
  Hub.prototype.subscribe = function (channel) {
    if (!Object.prototype.hasOwnProperty.call(this.channels, channel)) {
      this.channels[channel] = {seq: null, epoch: ''};
    }
    return this._send(this._subscribeMsg(channel));
  };

  Hub.prototype.unsubscribe = function (channel) {
    delete this.channels[channel];
    return this._send({op: 'unsubscribe', channel: channel});
  };

  Hub.prototype.publish = function (channel, data) {
    return this._send({op: 'publish', channel: channel, data: data});
  };

  // rpc asks the server's backend (-hub-proxy); callback(err, data) gets
  // its answer: err is {code, message} (code 'closed' when the session
  // closed first). False, and callback is never called, when not open.
  Hub.prototype.rpc = function (method, data, callback) {
    var id = ++this._rpcSeq;
    if (!this._send({op: 'rpc', id: id, method: method, data: data})) { return false; }
    this._rpcs[id] = callback || function () {};
    return true;
  };

  // refresh gives the session a new token before its own expires (the
  // server closes it with 3014 at the token's exp): onrefresh({exp})
  // when the server took it, an error op through onevent when not.
  // Reopens use the new token from now on.
  Hub.prototype.refresh = function (token) {
    this._conn.url = withToken(this._conn.url, token);
    return this._send({op: 'refresh', token: token});
  };

  function withToken(url, token) {
    var i = url.indexOf('?'), base = i < 0 ? url : url.slice(0, i);
    var parts = i < 0 ? [] : url.slice(i + 1).split('&'), out = [], k;
    for (k = 0; k < parts.length; k++) {
      if (parts[k] !== '' && parts[k].split('=')[0] !== 'token') { out.push(parts[k]); }
    }
    out.push('token=' + encodeURIComponent(token));
    return base + '?' + out.join('&');
  }

  Hub.prototype.close = function () { this._conn.close(); };

  global.SockJSHub = {connect: function (opts) { return new Hub(opts); }};
}(typeof window !== 'undefined' ? window : this));
