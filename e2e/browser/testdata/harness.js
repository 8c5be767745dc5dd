// The browser side of the e2e tests: one sockjsd connection at a time,
// driven from Go through promise-returning functions. Every wait has a
// deadline, so a broken transport fails the test instead of hanging it.
window.H = (function () {
  'use strict';
  var conn = null;
  var opens = [];   // {transport, sockTransport, connectMs, attempt}
  var closes = [];  // {code, reason, wasClean, reconnecting}
  var inbox = [];
  var wakers = [];

  function wake() {
    var w = wakers;
    wakers = [];
    w.forEach(function (f) { f(); });
  }

  // until resolves with cond()'s value once it is truthy, re-checking after
  // every connection event; it rejects after ms.
  function until(cond, ms, what) {
    return new Promise(function (resolve, reject) {
      var done = false;
      var timer = setTimeout(function () {
        done = true;
        reject(new Error('timed out after ' + ms + ' ms waiting for ' + what +
          ' (opens=' + JSON.stringify(opens) + ' closes=' + JSON.stringify(closes) + ')'));
      }, ms);
      function check() {
        if (done) { return; }
        var v = cond();
        if (v) {
          done = true;
          clearTimeout(timer);
          resolve(v);
          return;
        }
        wakers.push(check);
      }
      check();
    });
  }

  function connect(o) {
    opens = []; closes = []; inbox = [];
    conn = SockJSD.connect({
      url: o.url,
      transports: o.transports || undefined,
      timeout: o.timeout || undefined,
      reconnect: o.reconnect ? {minDelay: 100, maxDelay: 1000} : false,
      onopen: function (info) {
        opens.push({transport: info.transport, sockTransport: conn.sock.transport,
          connectMs: info.connectMs, attempt: info.attempt});
        wake();
      },
      onmessage: function (d) { inbox.push(d); wake(); },
      onclose: function (e) { closes.push(e); wake(); },
      onerror: function (e) { closes.push({code: -1, reason: String(e)}); wake(); }
    });
  }

  // waitOpen resolves with the n-th open (1-based), or rejects with the
  // close that came instead when the connection does not reconnect.
  function waitOpen(n, ms) {
    return until(function () {
      if (opens.length >= n) { return opens[n - 1]; }
      var c = closes[closes.length - 1];
      if (c && !c.reconnecting && closes.length >= n) { return {failed: c}; }
      return null;
    }, ms, 'open #' + n);
  }

  function waitClose(n, ms) {
    return until(function () { return closes.length >= n ? closes[n - 1] : null; }, ms, 'close #' + n);
  }

  // echo sends each message after the previous one came back and records
  // the round trip; the server must echo them in order.
  function echo(msgs, perMsgMs) {
    var got = [], rtts = [], i = 0;
    inbox = [];
    return new Promise(function (resolve, reject) {
      function next() {
        if (i >= msgs.length) {
          resolve({got: got, rtts: rtts});
          return;
        }
        var t0 = performance.now();
        if (!conn.send(msgs[i])) {
          reject(new Error('send #' + i + ' refused: connection is ' + conn.readyState));
          return;
        }
        until(function () { return inbox.length > 0; }, perMsgMs, 'echo #' + i).then(function () {
          rtts.push(performance.now() - t0);
          got.push(inbox.shift());
          i++;
          next();
        }, reject);
      }
      next();
    });
  }

  function close(ms) {
    var n = closes.length + 1;
    conn.close();
    return waitClose(n, ms);
  }

  function state() {
    return {readyState: conn && conn.readyState, transport: conn && conn.transport,
      opens: opens, closes: closes};
  }

  return {connect: connect, waitOpen: waitOpen, waitClose: waitClose, echo: echo, close: close, state: state};
}());
