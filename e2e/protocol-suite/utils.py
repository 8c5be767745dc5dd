"""Python 3 helpers for running sockjs-protocol.py (sockjs/sockjs-protocol).

The suite imports GET, GET_async, POST, POST_async, OPTIONS, old_POST_async,
WebSocket8Client and RawHttpConnection from a module named utils. Upstream's
utils.py is Python 2 (httplib, ws4py); this is our own implementation of the
same interface for Python 3 with the Debian package python3-websocket, written
to keep the upstream semantics the tests depend on:

- every synchronous request and raw connection has a 1 s socket timeout;
- RawHttpConnection.read() is one recv() of whatever has arrived (as the
  Hixie-76 test expects), read(n) exactly n bytes;
- closed() wants the server to close the connection within 100 ms;
- HTTP bodies are text (UTF-8); the raw connection's own reads are byte
  strings mapped one byte to one character (latin-1), which is what Python 2
  compared the Hixie-76 challenge answer against.

It is test tooling, not part of the server.
"""

import http.client
import queue  # noqa: F401  (kept for parity with upstream's imports)
import re
import socket
import struct
import urllib.parse

import websocket


def _recvline(s):
    b = bytearray()
    while True:
        c = s.recv(1)
        if not c:
            raise ConnectionError("connection closed in the middle of a line: %r" % bytes(b))
        b += c
        if c == b"\n":
            return bytes(b)


class CaseInsensitiveDict(object):
    def __init__(self, *args, **kwargs):
        self.lower = {}
        self.d = {}
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def _key(self, key):
        return self.lower.setdefault(key.lower(), key)

    def __getitem__(self, key):
        return self.d[self._key(key)]

    def __setitem__(self, key, value):
        self.d[self._key(key)] = value

    def items(self):
        for k in list(self.lower.values()):
            if k in self.d:
                yield (k, self.d[k])

    def get(self, key, *args):
        return self.d.get(self._key(key), *args)

    def __contains__(self, key):
        return self._key(key) in self.d

    def __repr__(self):
        return repr(self.d)


class Response(object):
    def __getitem__(self, key):
        return self.headers.get(key)

    def get(self, key, default):
        return self.headers.get(key, default)

    def __repr__(self):
        return "<Response HTTP/%s %s %r>" % (self.http, self.status, self.headers)


class RawHttpConnection(object):
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.s = socket.create_connection((u.hostname, u.port), timeout=1)

    def request(self, method, url, headers={}, body=None, timeout=1, http="1.1"):
        headers = CaseInsensitiveDict(headers)
        if method == "POST":
            body = (body or "")
        if isinstance(body, str):
            body = body.encode("utf-8")
        u = urllib.parse.urlparse(url)
        headers["Host"] = u.hostname + ":" + str(u.port) if u.port else u.hostname
        if body is not None:
            headers["Content-Length"] = str(len(body))
        rel_url = url[url.find(u.path):]
        req = ["%s %s HTTP/%s" % (method, rel_url, http)]
        for k, v in headers.items():
            req.append("%s: %s" % (k, v))
        req += ["", ""]
        self.send("\r\n".join(req))
        if body:
            self.send(body)

        head = _recvline(self.s).decode("latin-1")
        m = re.match(r"HTTP/(?P<version>\S+) (?P<status>\S+) (?P<description>.*)", head)
        if m is None:
            raise ConnectionError("not an HTTP status line: %r" % head)
        resp = Response()
        resp.http = m.group("version")
        resp.status = int(m.group("status"))
        resp.description = m.group("description").rstrip("\r\n")
        resp.headers = CaseInsensitiveDict()
        while True:
            line = _recvline(self.s).decode("latin-1")
            if line in ("\n", "\r\n"):
                break
            k, _, v = line.partition(":")
            resp.headers[k] = v.lstrip().rstrip("\r\n")
        return resp

    # Byte-level reads, used by the HTTP helpers below.
    def read_bytes(self, size=None):
        if size is None:
            return self.s.recv(999999)  # whatever has arrived
        data = bytearray()
        while len(data) < size:
            c = self.s.recv(size - len(data))
            if not c:
                raise ConnectionError("socket closed")
            data += c
        return bytes(data)

    def read_till_eof_bytes(self):
        data = bytearray()
        while True:
            c = self.s.recv(999999)
            if not c:
                return bytes(data)
            data += c

    def read_chunk_bytes(self):
        line = _recvline(self.s).rstrip(b"\r\n")
        n = int(line, 16) + 2  # the chunk's trailing CRLF
        return self.read_bytes(n)[:-2]

    # What the tests call directly: bytes as latin-1 text.
    def read(self, size=None):
        return self.read_bytes(size).decode("latin-1")

    def read_till_eof(self):
        return self.read_till_eof_bytes().decode("latin-1")

    def read_chunk(self):
        return self.read_chunk_bytes().decode("latin-1")

    def closed(self):
        # The server must have closed the connection within 100 ms.
        t = self.s.gettimeout()
        self.s.settimeout(0.1)
        try:
            if self.s.recv(1) != b"":
                raise Exception("Socket not closed!")
        finally:
            self.s.settimeout(t)
        return True

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.s.sendall(data)

    def close(self):
        self.s.close()


def _conn_close(r):
    v = r.get("Connection", "")
    return "close" in [k.strip() for k in v.lower().split(",")]


def SynchronousHttpRequest(method, url, **kwargs):
    c = RawHttpConnection(url)
    r = c.request(method, url, **kwargs)
    if r.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            chunk = c.read_chunk_bytes()
            if not chunk:
                break
            chunks.append(chunk)
        body = b"".join(chunks)
    elif r.get("Content-Length", ""):
        body = c.read_bytes(int(r["Content-Length"]))
    elif _conn_close(r):
        body = c.read_till_eof_bytes()
    elif r.status in (101, 304, 204) or (r.status == 200 and method == "OPTIONS"):
        body = b""
    else:
        raise Exception("%s %s: no Transfer-Encoding: chunked, Content-Length or Connection: close" % (r.status, r.headers))
    r.body = body.decode("utf-8")
    c.close()
    return r


def GET(url, **kwargs):
    return SynchronousHttpRequest("GET", url, **kwargs)


def POST(url, **kwargs):
    return SynchronousHttpRequest("POST", url, **kwargs)


def OPTIONS(url, **kwargs):
    return SynchronousHttpRequest("OPTIONS", url, **kwargs)


def AsynchronousHttpRequest(method, url, **kwargs):
    c = RawHttpConnection(url)
    r = c.request(method, url, **kwargs)
    if r.get("Transfer-Encoding", "").lower() == "chunked":
        def read():
            return c.read_chunk_bytes().decode("utf-8")
    elif r.get("Content-Length", ""):
        cl = int(r["Content-Length"])

        def read():
            return c.read_bytes(cl).decode("utf-8")
    elif _conn_close(r) or r.status == 101:
        def read():
            return c.read_bytes().decode("utf-8")
    else:
        raise Exception("%s %s: no Transfer-Encoding: chunked, Content-Length or Connection: close" % (r.status, r.headers))
    r.read = read
    r.close = c.close
    return r


def GET_async(url, **kwargs):
    return AsynchronousHttpRequest("GET", url, **kwargs)


def POST_async(url, **kwargs):
    return AsynchronousHttpRequest("POST", url, **kwargs)


class HttpResponse(object):
    """http.client request that is sent and, with load=False, never read."""

    def __init__(self, method, url, headers={}, body=None, load=True):
        headers = dict(headers)
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.netloc, timeout=1.0)
        path = u.path + ("?" + u.query if u.query else "")
        if not body and method == "POST":
            headers["Content-Length"] = "0"
        self.conn.request(method, path, body=body or None, headers=headers)
        if load:
            self.res = self.conn.getresponse()
            self.status = self.res.status
            self.headers = {k.lower(): v for k, v in self.res.getheaders()}

    def __getitem__(self, key):
        return self.headers.get(key.lower())

    def read(self):
        data = self.res.read(10240)
        if data:
            return data.decode("utf-8")
        self.close()
        return None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


def old_POST_async(url, **kwargs):
    return HttpResponse("POST", url, **kwargs)


class WebSocket8Client(object):
    """A hybi-13 client: recv() returns the next text message, or raises
    ConnectionClosedException with the server's close code and reason."""

    class ConnectionClosedException(Exception):
        pass

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=1.0)

    def send(self, data):
        self.ws.send(data)

    def recv(self):
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    return data.decode("utf-8")
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    ce = self.ConnectionClosedException()
                    ce.code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    ce.reason = data[2:].decode("utf-8")
                    raise ce
        except websocket.WebSocketConnectionClosedException:
            ce = self.ConnectionClosedException()
            ce.code, ce.reason = 1006, ""
            self.close()
            raise ce
        except Exception:
            self.close()
            raise

    def close(self):
        if self.ws:
            self.ws.close()
            self.ws = None
