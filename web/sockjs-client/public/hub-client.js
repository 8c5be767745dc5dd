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
 *     onclose: function (ev) {}
 *   });
 *   hub.subscribe('chat.lobby');
 *   hub.publish('chat.lobby', {text: 'hi'});
 *   hub.unsubscribe('chat.lobby');
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
    this._opts = opts;
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
        self.transport = null;
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
    var m, st;
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
    if (this._opts.onevent) { this._opts.onevent(m); }
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

  Hub.prototype.close = function () { this._conn.close(); };

  global.SockJSHub = {connect: function (opts) { return new Hub(opts); }};
}(typeof window !== 'undefined' ? window : this));
