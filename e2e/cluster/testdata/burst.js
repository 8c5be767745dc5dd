// burst(SockJS, url, transport, n, timeoutMs): opens a session with only
// `transport` allowed, sends n numbered messages ("m0".."m<n-1>") in bursts
// of 20 without waiting for echoes in between, and resolves with what
// came back: the count, the first out-of-order or duplicate index, the
// transport used and the close code. Shared by node (node-burst.js) and
// Chromium (evaluated in a page of the balancer's origin).
function burst(SockJS, url, transport, n, timeoutMs) {
  return new Promise(function (resolve) {
    var res = { transport: null, sent: 0, received: 0, firstBad: null, closeCode: null, error: null };
    var done = false;
    function finish() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(res);
    }
    var timer = setTimeout(function () { res.error = 'timed out'; finish(); }, timeoutMs);
    var sock = new SockJS(url, null, { transports: [transport], timeout: 10000 });
    function sendBurst() {
      var end = Math.min(res.sent + 20, n);
      while (res.sent < end) sock.send('m' + res.sent++);
    }
    sock.onopen = function () {
      res.transport = sock.transport;
      sendBurst();
    };
    sock.onmessage = function (e) {
      if (e.data !== 'm' + res.received && res.firstBad === null) {
        res.firstBad = { index: res.received, got: String(e.data).slice(0, 40) };
      }
      res.received++;
      if (res.received === n) {
        sock.close(1000, 'done');
      } else if (res.received === res.sent) {
        sendBurst();
      }
    };
    sock.onclose = function (e) {
      res.closeCode = e.code;
      finish();
    };
  });
}
if (typeof module !== 'undefined') module.exports = burst;
