#!/usr/bin/env python3
"""A chat backend behind sockjsd's session proxy, standard library only.

Browsers speak SockJS to sockjsd (`/chat`); sockjsd calls this backend over
HTTP, signed with the proxy secret:

    POST {hooks}/connect   a session opens: accept (user, channels, messages) or reject
    POST {hooks}/message   a batch of the session's messages: answer messages,
                           subscribe/unsubscribe, close
    POST {hooks}/close     the session ended
    POST /webhook          sockjsd's events (user.online, user.offline, ...)

and this backend calls sockjsd's API (`/api/publish`, `/api/send`) with the
API key. It also serves the chat page at `/`. See ../README.md.

    python3 backend.py --secret S --api-key K [--listen 127.0.0.1:8000]
                       [--sockjsd http://127.0.0.1:8081] ...
"""

import argparse
import collections
import datetime
import hashlib
import hmac
import html
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --- signature check (the same as internal/sign/sign.go) -------------------

SIGNATURE_HEADER = "X-Sockjsd-Signature"
TOLERANCE = 300  # seconds between the signature's t and our clock, either way


def sign(secret, body, t=None):
    """The header value sockjsd sends: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    ts = str(int(time.time()) if t is None else int(t))
    mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=" + ts + ",v1=" + mac


def verify(secret, header, body, now=None, tolerance=TOLERANCE):
    """None when header signs body with secret within tolerance, else why not."""
    if not header:
        return "no signature"
    ts, sigs = None, []
    for part in header.split(","):
        key, eq, value = part.strip().partition("=")
        if not eq:
            return "malformed signature"
        if key == "t":
            ts = value
        elif key == "v1":
            sigs.append(value)
    if ts is None or not re.fullmatch(r"[0-9]{1,12}", ts) or not sigs:
        return "malformed signature"
    now = time.time() if now is None else now
    if abs(now - int(ts)) > tolerance:
        return "stale signature"
    want = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    # Any v1 may match: sockjsd signs with the old and the new secret while
    # they rotate. compare_digest takes the same time wherever they differ.
    if any(hmac.compare_digest(s.encode(), want.encode()) for s in sigs):
        return None
    return "signature mismatch"


# --- the chat --------------------------------------------------------------

# Who may log in: a user in this table with its password, or any other
# (well-formed) name with the password "secret". An example, not a user store.
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}
ANY_USER_PASSWORD = "secret"

NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # user and room names
LOBBY = "lobby"
PRESENCE = "presence"  # the hub channel the online list goes to
MAX_TEXT = 2000  # characters of one say or whisper
SEEN_IDS = 10000  # webhook ids remembered for deduplication


def room_channel(room):
    return "room." + room


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first(v):
    """A query value: sockjsd sends strings; take the first of a list too."""
    if isinstance(v, list):
        v = v[0] if v else ""
    return v if isinstance(v, str) else ""


def check_login(user, password):
    """None when (user, password) may log in, else the reject object."""
    if not NAME.fullmatch(user):
        return {"code": 4002, "reason": "bad user name"}
    want = PASSWORDS.get(user, ANY_USER_PASSWORD)
    if not hmac.compare_digest(password.encode(), want.encode()):
        return {"code": 4001, "reason": "bad password"}
    return None


class APIError(Exception):
    pass


class SockjsdAPI:
    """sockjsd's server API, called with the API key."""

    def __init__(self, base, key, timeout=5.0):
        self.base = base.rstrip("/")
        self.key = key
        self.timeout = timeout

    def post(self, path, obj):
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(obj).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.key},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise APIError("%s: status %d" % (path, e.code)) from None
        except (OSError, ValueError) as e:
            raise APIError("%s: %s" % (path, e)) from None

    def publish(self, channel, data):
        return self.post("/api/publish", {"channel": channel, "data": data})

    def send_user(self, user, text):
        """Sends text to every session of user on every node; returns how many."""
        n = self.post("/api/send", {"user": user, "data": text}).get("sessions", 0)
        return n if isinstance(n, int) else 0


def msg(obj):
    """A message to a page: JSON text (SockJS carries strings)."""
    return json.dumps(obj, separators=(",", ":"))


class Chat:
    """The chat's state: each session's user and room, who is online."""

    def __init__(self, api, log=None):
        self.api = api
        self.log = log or (lambda *a: None)
        self.lock = threading.Lock()
        self.sessions = {}  # session id -> {"user", "room"}
        self.online = set()  # from user.online / user.offline webhooks
        self.seen = collections.OrderedDict()  # webhook ids, oldest first

    def online_list(self, plus=None):
        with self.lock:
            users = set(self.online)
        if plus:
            users.add(plus)
        return sorted(users)

    def connect(self, req):
        query = req.get("query")
        if not isinstance(query, dict):
            query = {}
        user, password = first(query.get("user")), first(query.get("password"))
        reject = check_login(user, password)
        if reject:
            self.log("connect %s refused: %s" % (req.get("session"), reject["reason"]))
            return {"reject": reject}
        with self.lock:
            self.sessions[req.get("session")] = {"user": user, "room": LOBBY}
        self.log("connect %s: %s via %s" % (req.get("session"), user, req.get("transport")))
        welcome = {"type": "welcome", "user": user, "room": LOBBY, "online": self.online_list(plus=user)}
        return {
            "user": user,
            "meta": {"room": LOBBY},
            "channels": [room_channel(LOBBY), PRESENCE],
            "messages": [msg(welcome)],
        }

    def message(self, req):
        sid = req.get("session")
        with self.lock:
            state = self.sessions.setdefault(sid, {"user": req.get("user") or "", "room": LOBBY})
            user = req.get("user") or state["user"]
            state["user"] = user
            start_room = state["room"]
        room = start_room
        out, close = [], None
        for text in req.get("messages") or []:
            if close:
                break  # nothing after a quit
            try:
                m = json.loads(text)
            except (TypeError, ValueError):
                m = None
            if not isinstance(m, dict):
                out.append(msg({"type": "error", "text": "not a JSON object"}))
                continue
            kind = m.get("type")
            if kind == "join":
                r = m.get("room")
                if not isinstance(r, str) or not NAME.fullmatch(r):
                    out.append(msg({"type": "error", "text": "bad room name"}))
                    continue
                room = r
                out.append(msg({"type": "joined", "room": room, "online": self.online_list(plus=user)}))
            elif kind == "say":
                t = m.get("text")
                if not isinstance(t, str) or not t or len(t) > MAX_TEXT:
                    out.append(msg({"type": "error", "text": "say needs a text of 1 to %d characters" % MAX_TEXT}))
                    continue
                line = {"type": "say", "room": room, "from": user, "text": t, "time": now_iso()}
                try:
                    self.api.publish(room_channel(room), line)
                except APIError as e:
                    self.log("publish: %s" % e)
                    out.append(msg({"type": "error", "text": "could not say it: the hub is unavailable"}))
                    continue
                if room != start_room:
                    # Joined in this same batch: sockjsd subscribes the
                    # session after this answer, so it would miss its own
                    # line. Echo it directly.
                    out.append(msg(line))
            elif kind == "whisper":
                to, t = m.get("to"), m.get("text")
                if not isinstance(to, str) or not NAME.fullmatch(to):
                    out.append(msg({"type": "error", "text": "whisper to whom?"}))
                    continue
                if not isinstance(t, str) or not t or len(t) > MAX_TEXT:
                    out.append(msg({"type": "error", "text": "whisper needs a text of 1 to %d characters" % MAX_TEXT}))
                    continue
                line = {"type": "whisper", "from": user, "to": to, "text": t, "time": now_iso()}
                try:
                    n = self.api.send_user(to, msg(line))
                except APIError as e:
                    self.log("send: %s" % e)
                    out.append(msg({"type": "error", "text": "could not whisper: sockjsd is unavailable"}))
                    continue
                if n == 0:
                    out.append(msg({"type": "error", "text": "%s is not online" % to}))
                elif to != user:  # to oneself, /api/send reached this session already
                    out.append(msg(line))
            elif kind == "echo":
                # For tests and load: the same n back, with how many echoes
                # this session's backend has seen (in order, each once: n + 1
                # when the client numbers them from 0).
                n = m.get("n")
                if not isinstance(n, int) or isinstance(n, bool):
                    out.append(msg({"type": "error", "text": "echo needs a whole number n"}))
                    continue
                with self.lock:
                    state["echoes"] = state.get("echoes", 0) + 1
                    seen = state["echoes"]
                out.append(msg({"type": "echo", "n": n, "seen": seen}))
            elif kind == "who":
                out.append(msg({"type": "online", "users": self.online_list(plus=user)}))
            elif kind == "quit":
                close = {"code": 4000, "reason": "bye"}
            else:
                out.append(msg({"type": "error", "text": "unknown message type"}))
        answer = {}
        if out:
            answer["messages"] = out
        if room != start_room:
            # The net change of the batch: joining a, then b, subscribes b
            # only; joining away and back changes nothing.
            answer["subscribe"] = [room_channel(room)]
            answer["unsubscribe"] = [room_channel(start_room)]
            with self.lock:
                if sid in self.sessions:
                    self.sessions[sid]["room"] = room
        if close:
            answer["close"] = close
        return answer

    def close(self, req):
        with self.lock:
            self.sessions.pop(req.get("session"), None)
        self.log("close %s: %s %s %s" % (req.get("session"), req.get("user"), req.get("code"), req.get("reason")))
        return {}

    def webhook(self, ev):
        """Applies one event; returns (status, answer). At least once: a
        repeated id is acknowledged and dropped."""
        eid = ev.get("id")
        if not isinstance(eid, str) or not eid:
            return 400, {"error": "event without id"}
        with self.lock:
            if eid in self.seen:
                return 200, {"duplicate": True}
            self.seen[eid] = True
            while len(self.seen) > SEEN_IDS:
                self.seen.popitem(last=False)
            kind, user = ev.get("type"), ev.get("user")
            changed = False
            if kind in ("user.online", "user.offline") and isinstance(user, str) and user:
                if kind == "user.online":
                    changed = user not in self.online
                    self.online.add(user)
                else:
                    changed = user in self.online
                    self.online.discard(user)
            online = sorted(self.online)
        self.log("webhook %s %s %s" % (eid, kind, user or ev.get("session")))
        if changed:
            event = "online" if kind == "user.online" else "offline"
            try:
                self.api.publish(PRESENCE, {"type": "presence", "event": event, "user": user, "online": online})
            except APIError as e:
                # Forget the id so that sockjsd's retry publishes again
                # (the set change is idempotent).
                self.log("publish presence: %s" % e)
                with self.lock:
                    self.seen.pop(eid, None)
                    if kind == "user.online":
                        self.online.discard(user)
                    else:
                        self.online.add(user)
                return 502, {"error": "hub unavailable"}
        return 200, {}


# --- HTTP ------------------------------------------------------------------

MAX_BODY = 1 << 20
PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web", "index.html")


def render_page(template, config):
    """The page with its configuration: the client script's URL in an
    attribute (HTML-escaped) and the config as JSON in a script (with <, >,
    & and the JS line separators escaped so that nothing ends the script)."""
    js = json.dumps(config, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        js = js.replace(a, b)
    return template.replace("{{CLIENT_URL}}", html.escape(config["clientUrl"], quote=True)).replace("{{CONFIG}}", js)


def check_hook(path, req):
    """None when a hook's body has the fields this backend relies on, else what is wrong."""
    if not isinstance(req.get("session"), str) or not req["session"]:
        return "session missing"
    if "user" in req and not isinstance(req["user"], str):
        return "user is not a string"
    if path.endswith("/message") and not (
            isinstance(req.get("messages"), list) and all(isinstance(m, str) for m in req["messages"])):
        return "messages is not a list of strings"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: sockjsd pools its connections
    server_version = "chat-backend-python"
    timeout = 60  # seconds: an idle kept-alive connection (and its thread) ends

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self.reply(200, app.page().encode(), "text/html; charset=utf-8")
        elif path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    do_HEAD = do_GET

    def do_POST(self):
        app = self.server.app
        path = self.path.split("?", 1)[0]
        hooks = {
            app.hook_prefix + "/connect": app.chat.connect,
            app.hook_prefix + "/message": app.chat.message,
            app.hook_prefix + "/close": app.chat.close,
        }
        if path != "/webhook" and path not in hooks:
            self.close_connection = True  # the body is not read
            return self.reply(404, {"error": "not found"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self.reply(411, {"error": "Content-Length required"})
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return self.reply(413, {"error": "body too large"})
        body = self.rfile.read(length)
        secret = app.webhook_secret if path == "/webhook" else app.secret
        why = verify(secret, self.headers.get(SIGNATURE_HEADER), body)
        if why:
            app.log("%s refused: %s" % (path, why))
            return self.reply(401, {"error": why})
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return self.reply(400, {"error": "body is not a JSON object"})
        try:
            if path == "/webhook":
                status, answer = app.chat.webhook(req)
                return self.reply(status, answer)
            bad = check_hook(path, req)
            if bad:
                return self.reply(400, {"error": bad})
            self.reply(200, hooks[path](req))
        except Exception as e:  # a bug: answer it rather than drop the connection
            app.log("%s: %r" % (path, e))
            self.close_connection = True
            self.reply(500, {"error": "internal error"})

    def do_PUT(self):
        self.close_connection = True
        self.reply(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # sockjsd may open many connections at once


class App:
    def __init__(self, args):
        self.secret = args.secret.encode()
        self.webhook_secret = (args.webhook_secret or args.secret).encode()
        self.hook_prefix = "/" + args.hook_prefix.strip("/") if args.hook_prefix.strip("/") else ""
        self.verbose = args.verbose
        public = (args.public_sockjsd or args.sockjsd).rstrip("/")
        self.config = {
            "sockjsUrl": public + args.service,
            "clientUrl": args.client_url or public + "/sockjs-client/sockjs.min.js",
        }
        with open(args.page, encoding="utf-8") as f:
            self.template = f.read()
        self.chat = Chat(SockjsdAPI(args.sockjsd, args.api_key), log=self.log)

    def page(self):
        return render_page(self.template, self.config)

    def log(self, line):
        if self.verbose:
            sys.stderr.write(line + "\n")


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(description="Chat backend behind sockjsd's session proxy.")
    p.add_argument("--listen", default=env("CHAT_LISTEN", "127.0.0.1:8000"), help="host:port (port 0: any free port) [CHAT_LISTEN]")
    p.add_argument("--sockjsd", default=env("SOCKJSD_URL", "http://127.0.0.1:8081"), help="sockjsd's base URL, for its API [SOCKJSD_URL]")
    p.add_argument("--public-sockjsd", default=env("SOCKJSD_PUBLIC_URL", ""), help="sockjsd's base URL as browsers reach it; default --sockjsd [SOCKJSD_PUBLIC_URL]")
    p.add_argument("--client-url", default=env("SOCKJS_CLIENT_URL", ""), help="sockjs-client's URL; default <public sockjsd>/sockjs-client/sockjs.min.js [SOCKJS_CLIENT_URL]")
    p.add_argument("--service", default=env("CHAT_SERVICE", "/chat"), help="the SockJS service's prefix on sockjsd [CHAT_SERVICE]")
    p.add_argument("--hook-prefix", default=env("CHAT_HOOK_PREFIX", "/sockjs"), help="path of the hooks: the base of -proxy /chat=http://host:port/sockjs [CHAT_HOOK_PREFIX]")
    p.add_argument("--secret", default=env("PROXY_SECRET", ""), help="sockjsd's -proxy-secret (required) [PROXY_SECRET]")
    p.add_argument("--webhook-secret", default=env("WEBHOOK_SECRET", ""), help="the webhooks' secret; default --secret [WEBHOOK_SECRET]")
    p.add_argument("--api-key", default=env("SOCKJSD_API_KEY", ""), help="sockjsd's -hub-api-key [SOCKJSD_API_KEY]")
    p.add_argument("--page", default=PAGE_FILE, help="the page template")
    p.add_argument("-v", "--verbose", action="store_true", help="log requests and events on stderr")
    args = p.parse_args(argv)
    if not args.secret:
        p.error("--secret (or PROXY_SECRET) is required: it is sockjsd's -proxy-secret")
    if not args.service.startswith("/"):
        p.error("--service must start with /")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    host, _, port = args.listen.rpartition(":")
    app = App(args)
    server = Server((host or "127.0.0.1", int(port)), Handler)
    server.app = app
    h, p = server.server_address[:2]
    # The first line on stdout: tests and run.sh read the address from it.
    print("chat backend listening on http://%s:%d/" % (h, p), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
