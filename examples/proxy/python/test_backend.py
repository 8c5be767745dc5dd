"""Tests of backend.py: the backend runs as its own process on a free
loopback port, called as sockjsd would (signed hooks and webhooks), with a
fake sockjsd API in this process recording what the backend publishes and
sends. Run: python3 -m unittest -v (in this directory)."""

import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"test-proxy-secret"
WEBHOOK_SECRET = b"test-webhook-secret"
API_KEY = "test-api-key"
START_TIMEOUT = 10  # seconds for the backend to print its address


def signature(body, secret=SECRET, t=None):
    """Signs as internal/sign/sign.go does (written again here, not taken
    from backend.py, so that a mistake there is not copied into the check)."""
    ts = str(int(time.time()) if t is None else t)
    return "t=%s,v1=%s" % (ts, hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest())


class FakeSockjsd:
    """sockjsd's API as far as the backend uses it: /api/publish, /api/send."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (path, body)
        self.sessions = {}  # user -> sessions /api/send reaches
        self.fail_publish = False
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = fake.handle(self.path, self.headers.get("Authorization"), body)
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, path, auth, body):
        if auth != "Bearer " + API_KEY:
            return 401, {"error": "unauthorized"}
        req = json.loads(body)
        with self.lock:
            if path == "/api/publish" and self.fail_publish:
                return 503, {"error": "unavailable"}  # not recorded: not published
            self.calls.append((path, req))
            if path == "/api/publish":
                return 200, {"seq": len(self.calls)}
            if path == "/api/send":
                return 200, {"sessions": self.sessions.get(req.get("user"), 0)}
        return 404, {"error": "not found"}

    def published(self, channel=None):
        with self.lock:
            return [b for p, b in self.calls if p == "/api/publish" and (channel is None or b["channel"] == channel)]

    def sent(self):
        with self.lock:
            return [b for p, b in self.calls if p == "/api/send"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class BackendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.api = FakeSockjsd()
        cls.stderr = tempfile.TemporaryFile()
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "backend.py"), "-v",
             "--listen", "127.0.0.1:0", "--sockjsd", cls.api.url,
             "--public-sockjsd", "http://sockjsd.test:8081",
             "--secret", SECRET.decode(), "--webhook-secret", WEBHOOK_SECRET.decode(),
             "--api-key", API_KEY],
            stdout=subprocess.PIPE, stderr=cls.stderr, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        # The first stdout line names the address; read it with a deadline.
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(cls.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT).decode()
        except queue.Empty:
            line = ""
        if "http://" not in line:
            cls.tearDownClass()
            raise RuntimeError("backend did not start: %r" % line)
        cls.base = line[line.index("http://"):].strip().rstrip("/")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait(timeout=10)
        cls.proc.stdout.close()
        cls.stderr.seek(0)
        log = cls.stderr.read().decode(errors="replace")
        cls.stderr.close()
        cls.api.close()
        if os.environ.get("CHAT_TEST_LOG"):
            sys.stderr.write(log)

    # --- helpers ---

    n = 0

    @classmethod
    def unique(cls, prefix):
        cls.n += 1
        return "%s%d" % (prefix, cls.n)

    def post(self, path, body, sig=None, secret=SECRET):
        """POSTs body (an object, or bytes as is), signed unless sig is
        given; returns (status, decoded answer)."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        sig = signature(body, secret) if sig is None else sig
        if sig:
            headers["X-Sockjsd-Signature"] = sig
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, json.loads(e.read() or b"{}")

    def connect(self, user="alice", password="wonderland", session=None):
        session = session or self.unique("s")
        status, answer = self.post("/sockjs/connect", {
            "session": session, "service": "/chat", "transport": "xhr-polling", "remote": "203.0.113.7",
            "headers": {"User-Agent": "test"}, "query": {"user": user, "password": password}})
        self.assertEqual(status, 200)
        return session, answer

    def message(self, session, user, *msgs):
        status, answer = self.post("/sockjs/message", {
            "session": session, "user": user, "messages": [m if isinstance(m, str) else json.dumps(m) for m in msgs]})
        self.assertEqual(status, 200)
        return answer

    def event(self, kind, user, eid=None, secret=WEBHOOK_SECRET):
        ev = {"id": eid or self.unique("ev"), "type": kind, "time": "2026-12-04T21:00:00Z", "user": user, "session": "x"}
        return self.post("/webhook", ev, secret=secret)

    # --- signatures ---

    def test_signature_matches_go_reference(self):
        # internal/sign.Value([]byte("s3cret"), time.Unix(1700000000, 0), body)
        self.assertEqual(signature(b'{"session":"x"}', b"s3cret", 1700000000),
                         "t=1700000000,v1=b7ef79db851ac427d2dea20fa8c0f76a6bee8726b5fc58dfade3830c86ca5cfb")

    def test_good_signature(self):
        status, answer = self.post("/sockjs/close", {"session": "nope", "user": "u", "code": 1000, "reason": ""})
        self.assertEqual((status, answer), (200, {}))

    def test_tampered_body(self):
        body = json.dumps({"session": "s", "user": "u", "code": 1000, "reason": ""}).encode()
        sig = signature(body)
        status, answer = self.post("/sockjs/close", body.replace(b"1000", b"1001"), sig=sig)
        self.assertEqual((status, answer["error"]), (401, "signature mismatch"))

    def test_stale_timestamp(self):
        body = b'{"session":"s","user":"u","code":1000,"reason":""}'
        for t in (int(time.time()) - 301, int(time.time()) + 301):
            status, answer = self.post("/sockjs/close", body, sig=signature(body, t=t))
            self.assertEqual((status, answer["error"]), (401, "stale signature"), t)
        # Within the tolerance it passes.
        status, _ = self.post("/sockjs/close", body, sig=signature(body, t=int(time.time()) - 200))
        self.assertEqual(status, 200)

    def test_missing_or_malformed_signature(self):
        body = b'{"session":"s"}'
        for sig in ("", "v1=abc", "t=123", "t=abc,v1=00", "garbage"):
            status, _ = self.post("/sockjs/close", body, sig=sig)
            self.assertEqual(status, 401, sig)

    def test_wrong_secret(self):
        status, _ = self.post("/sockjs/close", {"session": "s"}, secret=b"other")
        self.assertEqual(status, 401)
        # Hooks take the proxy secret, webhooks the webhook secret.
        status, _ = self.event("session.opened", "u", secret=SECRET)
        self.assertEqual(status, 401)

    def test_several_v1_any_matches(self):
        body = b'{"session":"s","user":"u","code":1000,"reason":""}'
        good = signature(body)
        t, v1 = good.split(",")
        status, _ = self.post("/sockjs/close", body, sig="%s,v1=%s,%s" % (t, "0" * 64, v1))
        self.assertEqual(status, 200)

    def test_not_json(self):
        status, _ = self.post("/sockjs/message", b"not json")
        self.assertEqual(status, 400)

    def test_malformed_hooks(self):
        for path, body in (("/sockjs/connect", {"query": {"user": "alice", "password": "wonderland"}}),
                           ("/sockjs/connect", {"session": ["x"]}),
                           ("/sockjs/message", {"session": "s", "user": 5, "messages": []}),
                           ("/sockjs/message", {"session": "s", "messages": "abc"}),
                           ("/sockjs/message", {"session": "s", "messages": [1, 2]}),
                           ("/sockjs/close", {"session": ""})):
            status, _ = self.post(path, body)
            self.assertEqual(status, 400, body)
        # A query that is not an object is no login.
        status, answer = self.post("/sockjs/connect", {"session": "s", "query": ["alice"]})
        self.assertEqual((status, answer["reject"]["code"]), (200, 4002))

    def test_unknown_path(self):
        status, _ = self.post("/sockjs/nope", {})
        self.assertEqual(status, 404)

    # --- connect ---

    def test_connect_bad_password(self):
        _, answer = self.connect("alice", "wrong")
        self.assertEqual(answer, {"reject": {"code": 4001, "reason": "bad password"}})
        # A table user cannot use the catch-all password.
        _, answer = self.connect("bob", "secret")
        self.assertEqual(answer["reject"]["code"], 4001)
        _, answer = self.connect("alice", "")
        self.assertEqual(answer["reject"]["code"], 4001)

    def test_connect_bad_user_name(self):
        for user in ("", "a b", "x" * 33, "<script>"):
            _, answer = self.connect(user, "secret")
            self.assertEqual(answer["reject"], {"code": 4002, "reason": "bad user name"}, user)

    def test_connect_good_login(self):
        _, answer = self.connect("alice", "wonderland")
        self.assertEqual(answer["user"], "alice")
        self.assertEqual(answer["channels"], ["room.lobby", "presence"])
        self.assertEqual(answer["meta"], {"room": "lobby"})
        welcome = json.loads(answer["messages"][0])
        self.assertEqual(welcome["type"], "welcome")
        self.assertEqual(welcome["user"], "alice")
        self.assertIn("alice", welcome["online"])
        # Any other name logs in with "secret".
        _, answer = self.connect("zed", "secret")
        self.assertEqual(answer["user"], "zed")

    # --- messages ---

    def test_message_batch(self):
        sid, _ = self.connect("alice", "wonderland")
        self.api.sessions["bob"] = 2
        before_pub, before_sent = len(self.api.published()), len(self.api.sent())
        answer = self.message(
            sid, "alice",
            {"type": "say", "text": "hi lobby"},
            {"type": "join", "room": "kitchen"},
            {"type": "say", "text": "hi kitchen"},
            {"type": "whisper", "to": "bob", "text": "psst"},
            {"type": "who"},
            "not json",
            {"type": "dance"})
        msgs = [json.loads(m) for m in answer["messages"]]
        self.assertEqual([m["type"] for m in msgs], ["joined", "say", "whisper", "online", "error", "error"])
        self.assertEqual(msgs[0]["room"], "kitchen")
        # The say after the join is echoed: the subscription comes after the answer.
        self.assertEqual((msgs[1]["room"], msgs[1]["text"], msgs[1]["from"]), ("kitchen", "hi kitchen", "alice"))
        self.assertEqual((msgs[2]["from"], msgs[2]["to"], msgs[2]["text"]), ("alice", "bob", "psst"))
        self.assertEqual(answer["subscribe"], ["room.kitchen"])
        self.assertEqual(answer["unsubscribe"], ["room.lobby"])
        self.assertNotIn("close", answer)
        # Published in order, to the room each say was in.
        pubs = self.api.published()[before_pub:]
        self.assertEqual([(p["channel"], p["data"]["text"], p["data"]["from"]) for p in pubs],
                         [("room.lobby", "hi lobby", "alice"), ("room.kitchen", "hi kitchen", "alice")])
        sent = self.api.sent()[before_sent:]
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["user"], "bob")
        self.assertEqual(json.loads(sent[0]["data"]), {k: msgs[2][k] for k in ("type", "from", "to", "text", "time")})
        # The next batch starts in the kitchen: a say there is not echoed.
        answer = self.message(sid, "alice", {"type": "say", "text": "still here"})
        self.assertEqual(answer, {})
        self.assertEqual(self.api.published()[-1]["channel"], "room.kitchen")

    def test_join_and_back_changes_nothing(self):
        sid, _ = self.connect("carol", "singer")
        answer = self.message(sid, "carol", {"type": "join", "room": "a"}, {"type": "join", "room": "lobby"})
        self.assertNotIn("subscribe", answer)
        self.assertNotIn("unsubscribe", answer)
        self.assertEqual(len(answer["messages"]), 2)
        answer = self.message(sid, "carol", {"type": "join", "room": "no good"})
        self.assertEqual(json.loads(answer["messages"][0])["type"], "error")

    def test_whisper_to_nobody(self):
        sid, _ = self.connect("alice", "wonderland")
        answer = self.message(sid, "alice", {"type": "whisper", "to": "ghost", "text": "boo"})
        self.assertEqual(json.loads(answer["messages"][0]), {"type": "error", "text": "ghost is not online"})

    def test_echo(self):
        sid, _ = self.connect("dora", "secret")
        answer = self.message(sid, "dora", {"type": "echo", "n": 0}, {"type": "echo", "n": 1})
        self.assertEqual([json.loads(m) for m in answer["messages"]],
                         [{"type": "echo", "n": 0, "seen": 1}, {"type": "echo", "n": 1, "seen": 2}])
        # Counted per session, across batches.
        answer = self.message(sid, "dora", {"type": "echo", "n": 7})
        self.assertEqual(json.loads(answer["messages"][0]), {"type": "echo", "n": 7, "seen": 3})
        other, _ = self.connect("dora", "secret")
        answer = self.message(other, "dora", {"type": "echo", "n": 0})
        self.assertEqual(json.loads(answer["messages"][0])["seen"], 1)
        for bad in ("1", 1.5, True, None):
            answer = self.message(sid, "dora", {"type": "echo", "n": bad})
            self.assertEqual(json.loads(answer["messages"][0]), {"type": "error", "text": "echo needs a whole number n"}, bad)
        answer = self.message(sid, "dora", {"type": "echo", "n": 8})
        self.assertEqual(json.loads(answer["messages"][0]), {"type": "echo", "n": 8, "seen": 4})

    def test_quit(self):
        sid, _ = self.connect("alice", "wonderland")
        n = len(self.api.published())
        answer = self.message(sid, "alice", {"type": "quit"}, {"type": "say", "text": "after"})
        self.assertEqual(answer["close"], {"code": 4000, "reason": "bye"})
        self.assertEqual(len(self.api.published()), n)  # nothing after the quit
        status, _ = self.post("/sockjs/close", {"session": sid, "user": "alice", "code": 4000, "reason": "bye"})
        self.assertEqual(status, 200)

    def test_hub_unavailable(self):
        sid, _ = self.connect("alice", "wonderland")
        self.api.fail_publish = True
        try:
            answer = self.message(sid, "alice", {"type": "say", "text": "x"})
        finally:
            self.api.fail_publish = False
        self.assertEqual(json.loads(answer["messages"][0])["type"], "error")

    # --- webhooks ---

    def test_webhook_dedupe(self):
        user = self.unique("dave")
        eid = self.unique("ev")
        for want in ({}, {"duplicate": True}, {"duplicate": True}):
            status, answer = self.event("user.online", user, eid)
            self.assertEqual((status, answer), (200, want))
        pubs = [p["data"] for p in self.api.published("presence") if p["data"]["user"] == user]
        self.assertEqual(len(pubs), 1)
        self.assertEqual(pubs[0]["event"], "online")
        self.assertIn(user, pubs[0]["online"])
        # The online list reaches a new session's welcome.
        _, answer = self.connect("zed", "secret")
        self.assertIn(user, json.loads(answer["messages"][0])["online"])
        # Offline, twice under one id: one publish.
        off = self.unique("ev")
        self.assertEqual(self.event("user.offline", user, off), (200, {}))
        self.assertEqual(self.event("user.offline", user, off), (200, {"duplicate": True}))
        pubs = [p["data"] for p in self.api.published("presence") if p["data"]["user"] == user]
        self.assertEqual([p["event"] for p in pubs], ["online", "offline"])
        self.assertNotIn(user, pubs[1]["online"])

    def test_webhook_retried_after_hub_failure(self):
        user, eid = self.unique("erin"), self.unique("ev")
        self.api.fail_publish = True
        try:
            status, _ = self.event("user.online", user, eid)
        finally:
            self.api.fail_publish = False
        self.assertEqual(status, 502)
        # sockjsd retries the same event: it is applied, not taken as a repeat.
        self.assertEqual(self.event("user.online", user, eid), (200, {}))
        pubs = [p["data"] for p in self.api.published("presence") if p["data"]["user"] == user]
        self.assertEqual([p["event"] for p in pubs], ["online"])

    def test_webhook_bad_signature(self):
        body = json.dumps({"id": "e1", "type": "user.online", "user": "mallory"}).encode()
        status, _ = self.post("/webhook", body, sig=signature(body, WEBHOOK_SECRET).replace("v1=", "v1=0"))
        self.assertEqual(status, 401)
        stale = signature(body, WEBHOOK_SECRET, t=int(time.time()) - 400)
        status, _ = self.post("/webhook", body, sig=stale)
        self.assertEqual(status, 401)
        self.assertFalse([p for p in self.api.published("presence") if p["data"]["user"] == "mallory"])

    def test_webhook_without_id(self):
        status, _ = self.post("/webhook", {"type": "user.online", "user": "x"}, secret=WEBHOOK_SECRET)
        self.assertEqual(status, 400)

    # --- the page ---

    def test_page(self):
        with urllib.request.urlopen(self.base + "/?transports=xhr-polling", timeout=10) as resp:
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.headers["Content-Type"].startswith("text/html"))
            page = resp.read().decode()
        self.assertIn('<script src="http://sockjsd.test:8081/sockjs-client/sockjs.min.js"></script>', page)
        self.assertIn('"sockjsUrl":"http://sockjsd.test:8081/chat"', page)
        self.assertIn("params.get('transports')", page)
        self.assertNotIn("{{", page)


if __name__ == "__main__":
    unittest.main()
