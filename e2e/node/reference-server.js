// sockjs-node (npm sockjs@0.3.24), the reference implementation, serving
// the services the protocol suite expects. Prints {"port":N} once
// listening on 127.0.0.1 (port 0 = OS-chosen, or argv[2]).
'use strict';
const http = require('http');
const sockjs = require('sockjs');

const responseLimit = parseInt(process.env.RESPONSE_LIMIT || '4096', 10);
const base = {
  sockjs_url: '/static/sockjs.min.js',
  response_limit: responseLimit,
  log: function () {},
};

function echo(conn) {
  conn.on('data', function (m) { conn.write(m); });
}

const services = [
  ['/echo', {}, echo],
  ['/close', {}, function (conn) { conn.close(3000, 'Go away!'); }],
  ['/disabled_websocket_echo', { websocket: false }, echo],
  ['/cookie_needed_echo', { jsessionid: true }, echo],
];

const server = http.createServer();
for (const [prefix, extra, onConnection] of services) {
  const s = sockjs.createServer(Object.assign({}, base, extra));
  s.on('connection', onConnection);
  s.installHandlers(server, { prefix: prefix });
}
server.listen(parseInt(process.argv[2] || '0', 10), '127.0.0.1', function () {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
// Exit with the parent: the Go test closes our stdin when it is done.
process.stdin.on('end', function () { process.exit(0); });
process.stdin.resume();
