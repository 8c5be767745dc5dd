// The sockjs-node echo of `make bench`: npm sockjs@0.3.24 (installed by
// `make deps-node` in e2e/node/node_modules) serving an echo at /echo with
// the same defaults as ours and igm's (128 KiB streaming responses,
// websocket on). Usage: node server.js <port> [node_modules dir].
// Prints {"port":N} once listening on 127.0.0.1 and exits when its stdin
// closes, so it never outlives the benchmark driver.
'use strict';
const http = require('http');
const path = require('path');

const port = parseInt(process.argv[2] || '0', 10);
const modules = process.argv[3] ||
  path.join(__dirname, '..', '..', '..', 'e2e', 'node', 'node_modules');
const sockjs = require(path.resolve(modules, 'sockjs'));

const service = sockjs.createServer({
  sockjs_url: '/unused/sockjs.min.js', // only the iframe page loads it
  response_limit: 128 * 1024,
  log: function () {},
});
service.on('connection', function (conn) {
  conn.on('data', function (m) { conn.write(m); });
});

const server = http.createServer();
service.installHandlers(server, { prefix: '/echo' });
server.listen(port, '127.0.0.1', function () {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.stdin.on('end', function () { process.exit(0); });
process.stdin.resume();
