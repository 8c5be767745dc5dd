// Drives the real sockjs-client (npm sockjs-client@1.6.1) under node:
//   node client.js <base-url> <transport> <messages.json>
// connects with only that transport allowed, sends every message of the
// JSON array in order (one in flight at a time, so each round trip is
// timed), checks each echo, and prints one JSON line with the outcome.
'use strict';
const fs = require('fs');
const SockJS = require('sockjs-client');

const [url, transport, file] = process.argv.slice(2);
const messages = JSON.parse(fs.readFileSync(file, 'utf8'));
const result = { transport: null, sent: 0, echoed: 0, mismatch: null, closeCode: null, error: null, rttMs: [] };

const timer = setTimeout(function () {
  result.error = 'timed out';
  finish(1);
}, 60000);

function finish(code) {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(result) + '\n', function () { process.exit(code); });
}

const sock = new SockJS(url, null, { transports: [transport], timeout: 10000 });
let i = 0;
let sentAt = 0;
function sendNext() {
  if (i === messages.length) {
    sock.close(1000, 'done');
    return;
  }
  sentAt = Date.now();
  sock.send(messages[i]);
  result.sent++;
}
sock.onopen = function () {
  result.transport = sock.transport;
  sendNext();
};
sock.onmessage = function (e) {
  result.rttMs.push(Date.now() - sentAt);
  if (e.data !== messages[i]) {
    result.mismatch = { index: i, gotLength: e.data.length, wantLength: messages[i].length };
    sock.close(1000, 'mismatch');
    return;
  }
  result.echoed++;
  i++;
  sendNext();
};
sock.onclose = function (e) {
  result.closeCode = e.code;
  finish(result.echoed === messages.length && !result.mismatch ? 0 : 1);
};
