/*
 * hub-client.js: the hub's protocol over SockJSD.connect (load
 * /sockjs-client/sockjs.min.js, /sockjsd.js, then this). Plain ES5.
 *
 *   var hub = SockJSHub.connect({
 *     url: '/hub',                    // a token goes in the query: '/hub?token=…'
 *     transports: ['xhr-polling'],    // optional, as SockJSD.connect
 *     reconnect: true,                // optional; subscriptions are renewed on every reopen
 *     onopen: function (info) {},     // {transport, connectMs}
 *     onmessage: function (m) {},     // {channel, seq, data}
 *     onevent: function (m) {},       // every other server message: subscribed, published, error…
 *     onclose: function (ev) {}
 *   });
 *   hub.subscribe('chat.lobby');
 *   hub.publish('chat.lobby', {text: 'hi'});
 *   hub.unsubscribe('chat.lobby');
 *   hub.transport; hub.close();
 *
 * Pings ({"op":"ping","id":N}) are answered with pongs at once, so the
 * server measures this page's round trip on its transport.
 */
(function (global) {
  'use strict';

  function Hub(opts) {
    var self = this;
    this.channels = {};
    this.transport = null;
    this._opts = opts;
    this._conn = global.SockJSD.connect({
      url: opts.url || '/hub',
      transports: opts.transports,
      timeout: opts.timeout,
      reconnect: opts.reconnect,
      onrtt: opts.onrtt,
      onopen: function (info) {
        var ch;
        self.transport = info.transport;
        for (ch in self.channels) {
          if (Object.prototype.hasOwnProperty.call(self.channels, ch)) {
            self._send({op: 'subscribe', channel: ch});
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

  Hub.prototype._receive = function (raw) {
    var m;
    try {
      m = JSON.parse(raw);
    } catch (e) {
      return;
    }
    if (m.op === 'ping') {
      this._send({op: 'pong', id: m.id});
      return;
    }
    if (m.op === 'message') {
      if (this._opts.onmessage) { this._opts.onmessage({channel: m.channel, seq: m.seq, data: m.data}); }
      return;
    }
    if (this._opts.onevent) { this._opts.onevent(m); }
  };

  // subscribe remembers the channel, so that a reconnect renews it.
  Hub.prototype.subscribe = function (channel) {
    this.channels[channel] = true;
    return this._send({op: 'subscribe', channel: channel});
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
