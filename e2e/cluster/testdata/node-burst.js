// node node-burst.js <node_modules dir> <url> <transport> <n>: burst.js
// under node with the real sockjs-client; prints one JSON line.
'use strict';
const path = require('path');
const [modules, url, transport, n] = process.argv.slice(2);
const SockJS = require(path.join(modules, 'sockjs-client'));
const burst = require('./burst.js');
burst(SockJS, url, transport, Number(n), 120000).then(function (res) {
  process.stdout.write(JSON.stringify(res) + '\n', function () { process.exit(0); });
});
