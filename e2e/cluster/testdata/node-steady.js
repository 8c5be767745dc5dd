// node node-steady.js <node_modules dir> <url> <transport>: the real
// sockjs-client under node, one numbered message ("m0", "m1", ...) in
// flight at a time, each sent when the echo of the one before came, until
// stdin ends; then it closes with 1000 once the last echo is in and
// prints one JSON line with burst.js's fields. It says on stderr when
// the session is open ("open") and when 20 messages came back ("going").
'use strict';
const path = require('path');
const [modules, url, transport] = process.argv.slice(2);
const SockJS = require(path.join(modules, 'sockjs-client'));

const res = { transport: null, sent: 0, received: 0, firstBad: null, closeCode: null, error: null };
let stopping = false;
let done = false;
const timer = setTimeout(function () { res.error = 'timed out'; finish(); }, 120000);
function finish() {
  if (done) return;
  done = true;
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(res) + '\n', function () { process.exit(0); });
}
const sock = new SockJS(url, null, { transports: [transport], timeout: 10000 });
function next() {
  if (stopping) {
    sock.close(1000, 'done');
    return;
  }
  sock.send('m' + res.sent++);
}
sock.onopen = function () {
  res.transport = sock.transport;
  process.stderr.write('open ' + transport + '\n');
  next();
};
sock.onmessage = function (e) {
  if (e.data !== 'm' + res.received && res.firstBad === null) {
    res.firstBad = { index: res.received, got: String(e.data).slice(0, 40) };
  }
  res.received++;
  if (res.received === 20) process.stderr.write('going ' + transport + '\n');
  if (res.received === res.sent) next();
};
sock.onclose = function (e) {
  res.closeCode = e.code;
  finish();
};
process.stdin.on('end', function () {
  stopping = true;
  if (res.transport !== null && res.received === res.sent) sock.close(1000, 'done');
});
process.stdin.resume();
