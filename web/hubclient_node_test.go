package web

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockjsd/sockjsd/internal/testenv"
)

// hubClientScript drives hub-client.js in node over a fake SockJSD.connect
// that records what the hub object sends and lets the script play the
// server: rpc answers and their ids, rpc callbacks failed by a close,
// refresh (the op, the token of later reopens, onrefresh, hub.exp), and
// an unasked unsubscribed forgetting the channel.
const hubClientScript = `
const assert = require('assert'), fs = require('fs'), vm = require('vm');
// The script's objects come from another realm: compared as JSON.
const eq = (got, want) => assert.strictEqual(JSON.stringify(got), JSON.stringify(want));
let conn;
const sandbox = {setTimeout, SockJSD: {connect(opts) {
  conn = {opts, url: 'http://h/hub?x=1&token=old', sent: [], open: false,
    send(s) { if (!this.open) return false; this.sent.push(JSON.parse(s)); return true; },
    close() {}};
  return conn;
}}};
sandbox.window = sandbox;
vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), sandbox);
const refreshed = [], results = [];
const hub = sandbox.SockJSHub.connect({url: '/hub?x=1&token=old', onrefresh: r => refreshed.push(r)});
const server = m => conn.opts.onmessage(JSON.stringify(m));

assert.strictEqual(hub.rpc('m', 1, () => results.push('not open')), false);
conn.open = true; conn.opts.onopen({transport: 'websocket'});
assert.strictEqual(hub.rpc('add', [1, 2], (err, data) => results.push([err, data])), true);
assert.strictEqual(hub.rpc('get', null, (err, data) => results.push([err, data])), true);
const [a, b] = conn.sent.slice(-2);
eq([a.op, a.method, a.data, b.method], ['rpc', 'add', [1, 2], 'get']);
assert.notStrictEqual(a.id, b.id);
server({op: 'rpc_result', id: b.id, error: {code: 'not_found', message: 'no'}});
server({op: 'rpc_result', id: a.id, data: {sum: 3}});
server({op: 'rpc_result', id: a.id, data: 'again'}); // answered already: dropped
eq(results, [[{code: 'not_found', message: 'no'}, null], [null, {sum: 3}]]);

assert.strictEqual(hub.refresh('new+tok'), true);
eq(conn.sent[conn.sent.length - 1], {op: 'refresh', token: 'new+tok'});
assert.strictEqual(conn.url, 'http://h/hub?x=1&token=new%2Btok');
assert.strictEqual(hub.exp, null);
server({op: 'refreshed', exp: 1700000000});
eq(refreshed, [{exp: 1700000000}]);
assert.strictEqual(hub.exp, 1700000000);

hub.subscribe('news'); hub.subscribe('chat.a');
server({op: 'unsubscribed', channel: 'news'});
eq(Object.keys(hub.channels), ['chat.a']);

hub.rpc('slow', null, (err, data) => results.push([err, data]));
conn.open = false; conn.opts.onclose({code: 3014, reason: 'Token expired'});
eq(results[2], [{code: 'closed', message: 'the session closed'}, null]);
console.log('ok');
`

func TestHubClientRPCAndRefresh(t *testing.T) {
	node := testenv.Node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := filepath.Join(repoRoot(t), DefaultDir, "public", "hub-client.js")
	out, err := exec.CommandContext(ctx, node, "-e", hubClientScript, js).CombinedOutput()
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("node: %v\n%s", err, out)
	}
}
