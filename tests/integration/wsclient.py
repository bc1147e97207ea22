"""A raw WebSocket client (RFC 6455) on stdlib sockets, for tests.

It does everything by hand so tests can both behave and misbehave: the
opening handshake (Sec-WebSocket-Key, checked Sec-WebSocket-Accept), masked
frames, fragmented messages, unmasked frames, reserved opcodes, arbitrary raw
bytes. recv() answers pings by itself and reassembles fragmented messages.

Frames from the server are checked as a browser would: a masked server frame,
a bad continuation or a control frame over 125 bytes raises ProtocolError.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

OPNAMES = {OP_CONT: "cont", OP_TEXT: "text", OP_BINARY: "binary", OP_CLOSE: "close",
           OP_PING: "ping", OP_PONG: "pong"}

# Close code a browser reports when the TCP connection ends without a close
# frame; expect_close() returns it on EOF.
ABNORMAL_CLOSURE = 1006


class WsHandshakeError(Exception):
    """The server did not switch protocols. status: the HTTP status (or None
    when the connection ended first); headers: dict (lower-case names)."""

    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = headers
        self.body = body
        super().__init__(f"WebSocket handshake failed: status {status} {reason} "
                         f"body {body[:200]!r}")


class ProtocolError(Exception):
    pass


class ConnectionClosed(Exception):
    """The TCP connection ended (EOF or reset) while reading."""


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, masking_key=None):
    """Bytes of one frame. rsv: the three RSV bits as an int 0..7."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    mk = masking_key if masking_key is not None else os.urandom(4)
    return head + mk + apply_mask(payload, mk)


def apply_mask(data, mk):
    if not data:
        return b""
    # XOR with the key repeated, done on big ints: fast for megabyte payloads.
    n = len(data)
    key = (mk * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class WsClient:
    """One client connection. Use WsClient.connect(host, port, ...)."""

    def __init__(self, sock, host, port, path, response_headers, leftover=b""):
        self.sock = sock
        self.host = host
        self.port = port
        self.path = path
        self.response_headers = response_headers
        self._buf = bytearray(leftover)
        self.close_sent = False
        self.close_received = None  # (code, reason) once a close frame arrived
        self.eof = False
        self.pings_received = []    # payloads of pings recv() answered
        self.pongs_received = []    # payloads of pongs the server sent
        # Set by the test harness: callable(uid) -> connection count of that
        # user, used to know when a seed-form login has been processed.
        self.user_probe = None

    # ---- opening handshake ----------------------------------------------

    @classmethod
    def connect(cls, host, port, path="/ws", origin=None, headers=None, timeout=10.0,
                rcvbuf=None, key=None, version="13", wrap=None, host_header=None):
        """Open a TCP connection and perform the opening handshake.

        Raises WsHandshakeError (with .status) when the server answers
        anything but a valid 101. rcvbuf: SO_RCVBUF to set before connecting
        (a small one makes a client that stops reading back up quickly).
        wrap: called with the connected socket, returns the one to speak on
        (TLS); host_header: the name in Host (default: host)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            if wrap is not None:
                sock = wrap(sock)
            key = key or base64.b64encode(os.urandom(16)).decode()
            lines = [f"GET {path} HTTP/1.1", f"Host: {host_header or host}:{port}",
                     "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}"]
            if version is not None:
                lines.append(f"Sec-WebSocket-Version: {version}")
            if origin is not None:
                lines.append(f"Origin: {origin}")
            for k, v in (headers or {}).items():
                lines.append(f"{k}: {v}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status, hdrs, leftover, reason = cls._read_response_head(sock, timeout)
            if status != 101:
                body = leftover
                clen = hdrs.get("content-length")
                if clen is not None:
                    body = cls._read_more(sock, body, int(clen), timeout)
                raise WsHandshakeError(status, hdrs, bytes(body), reason)
            if hdrs.get("upgrade", "").lower() != "websocket":
                raise WsHandshakeError(status, hdrs, b"", "Upgrade header is not websocket")
            if "upgrade" not in hdrs.get("connection", "").lower():
                raise WsHandshakeError(status, hdrs, b"", "Connection header lacks upgrade")
            if hdrs.get("sec-websocket-accept") != accept_key(key):
                raise WsHandshakeError(status, hdrs, b"",
                                       f"bad Sec-WebSocket-Accept {hdrs.get('sec-websocket-accept')!r}")
        except BaseException:
            sock.close()
            raise
        return cls(sock, host, port, path, hdrs, leftover)

    @staticmethod
    def _read_more(sock, body, n, timeout):
        body = bytearray(body)
        deadline = time.monotonic() + timeout
        while len(body) < n and time.monotonic() < deadline:
            try:
                chunk = sock.recv(n - len(body))
            except OSError:
                break
            if not chunk:
                break
            body += chunk
        return body

    @staticmethod
    def _read_response_head(sock, timeout):
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise WsHandshakeError(None, {}, bytes(buf), "timeout reading response")
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise WsHandshakeError(None, {}, bytes(buf), "connection closed during handshake")
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise WsHandshakeError(None, {}, bytes(buf), f"bad status line {lines[0]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                k = k.strip().lower()
                hdrs[k] = (hdrs[k] + ", " + v.strip()) if k in hdrs else v.strip()
        return status, hdrs, rest, reason

    # ---- sending ----------------------------------------------------------

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, masking_key=None):
        self.send_raw(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv,
                                   masking_key=masking_key))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        """Compact JSON, as a browser's JSON.stringify writes it."""
        self.send_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    def send_close(self, code=1000, reason=""):
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
        self.send_frame(OP_CLOSE, payload)
        self.close_sent = True

    def send_fragmented(self, opcode, chunks, interleave_ping=False):
        """One message as len(chunks) frames (first opcode, then
        continuations). interleave_ping puts a ping between fragments, which
        RFC 6455 allows."""
        chunks = [c.encode() if isinstance(c, str) else c for c in chunks]
        for i, c in enumerate(chunks):
            op = opcode if i == 0 else OP_CONT
            self.send_frame(op, c, fin=(i == len(chunks) - 1))
            if interleave_ping and i < len(chunks) - 1:
                self.send_ping(b"mid")

    # ---- receiving --------------------------------------------------------

    def _fill(self, n, deadline):
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for a frame")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                raise TimeoutError("timed out waiting for a frame") from None
            except (ConnectionResetError, BrokenPipeError) as e:
                self.eof = True
                raise ConnectionClosed(f"connection reset: {e}") from None
            if not chunk:
                self.eof = True
                raise ConnectionClosed("EOF")
            self._buf += chunk

    def _take(self, n):
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def recv_frame(self, timeout=5.0):
        """One raw frame: (fin, rsv, opcode, payload). No automatic replies."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self._buf[0], self._buf[1]
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 7
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        hl = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack_from("!H", self._buf, 2)[0]
            hl = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack_from("!Q", self._buf, 2)[0]
            hl = 10
        if masked:
            hl += 4
        self._fill(hl + n, deadline)
        head = self._take(hl)
        payload = self._take(n)
        if masked:
            raise ProtocolError("server sent a masked frame")
        if rsv:
            raise ProtocolError(f"server frame has RSV bits {rsv} set without an extension")
        if opcode >= 0x8 and (n > 125 or not fin):
            raise ProtocolError("server control frame too long or fragmented")
        del head
        return fin, rsv, opcode, payload

    def recv(self, timeout=5.0):
        """The next message: (opcode, payload). Fragmented messages are
        reassembled; pings are answered with pongs and skipped; pongs are
        recorded and skipped. A close frame is returned as (OP_CLOSE,
        payload) after answering it. Raises TimeoutError or ConnectionClosed."""
        deadline = time.monotonic() + timeout
        msg_op = None
        parts = []
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            fin, _rsv, op, payload = self.recv_frame(timeout=remaining)
            if op == OP_PING:
                self.pings_received.append(payload)
                if not self.close_sent:
                    try:
                        self.send_pong(payload)
                    except OSError:
                        pass
                continue
            if op == OP_PONG:
                self.pongs_received.append(payload)
                continue
            if op == OP_CLOSE:
                self._on_close(payload)
                return op, payload
            if op == OP_CONT:
                if msg_op is None:
                    raise ProtocolError("continuation frame without a message start")
                parts.append(payload)
            elif op in (OP_TEXT, OP_BINARY):
                if msg_op is not None:
                    raise ProtocolError("new message started inside a fragmented message")
                msg_op = op
                parts = [payload]
            else:
                raise ProtocolError(f"server sent reserved opcode {op:#x}")
            if fin:
                return msg_op, b"".join(parts)

    def _on_close(self, payload):
        if len(payload) >= 2:
            code = struct.unpack("!H", payload[:2])[0]
            reason = payload[2:].decode("utf-8", errors="replace")
        elif len(payload) == 1:
            raise ProtocolError("close frame with a 1-byte payload")
        else:
            code, reason = None, ""
        self.close_received = (code, reason)
        if not self.close_sent:
            try:
                self.send_frame(OP_CLOSE, payload[:2])
                self.close_sent = True
            except OSError:
                pass

    def recv_text(self, timeout=5.0):
        """The next message, which must be a text frame of valid UTF-8."""
        op, payload = self.recv(timeout)
        if op == OP_CLOSE:
            raise AssertionError(f"expected a text message, got close {self.close_received}")
        if op != OP_TEXT:
            raise AssertionError(f"expected a text message, got {OPNAMES.get(op, op)} {payload[:100]!r}")
        return payload.decode("utf-8")

    def recv_json(self, timeout=5.0):
        text = self.recv_text(timeout)
        try:
            return json.loads(text)
        except ValueError:
            raise AssertionError(f"expected a JSON text message, got {text[:300]!r}") from None

    def recv_texts(self, n, timeout=10.0):
        """n text messages (timeout for all of them together)."""
        deadline = time.monotonic() + timeout
        return [self.recv_text(max(0.0, deadline - time.monotonic())) for _ in range(n)]

    def expect_close(self, timeout=5.0):
        """Read (and discard messages) until a close frame or EOF.

        Returns (code, reason): code None for a close frame without a status,
        ABNORMAL_CLOSURE (1006) when the connection ended without a close
        frame, as a browser reports it."""
        if self.close_received is not None:
            return self.close_received
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection not closed within {timeout}s")
            try:
                op, _payload = self.recv(timeout=remaining)
            except ConnectionClosed:
                return ABNORMAL_CLOSURE, ""
            except TimeoutError:
                raise AssertionError(f"connection not closed within {timeout}s") from None
            if op == OP_CLOSE:
                return self.close_received

    def expect_eof(self, timeout=5.0):
        """After a close handshake: the server must end the TCP connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                return
            except TimeoutError:
                raise AssertionError(f"server did not close TCP within {timeout}s") from None

    def no_message(self, within_s=0.3):
        """Assert that no message (other than pings) arrives within within_s.
        Only for asserting absence: never use it to wait for something."""
        try:
            op, payload = self.recv(timeout=within_s)
        except TimeoutError:
            return
        if op == OP_CLOSE:
            raise AssertionError(f"expected no message, connection closed {self.close_received}")
        raise AssertionError(f"expected no message, got {OPNAMES.get(op, op)} {payload[:300]!r}")

    def wait_pongs(self, n, timeout=5.0):
        """Read until n pongs have arrived in all (a data message meanwhile
        is an error)."""
        deadline = time.monotonic() + timeout
        while len(self.pongs_received) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.pongs_received)} pongs, expected {n}")
            try:
                op, payload = self.recv(timeout=remaining)
            except TimeoutError:
                continue
            raise AssertionError(f"expected a pong, got {OPNAMES.get(op, op)} {payload[:200]!r}")
        return self.pongs_received

    def is_open(self, timeout=5.0):
        """Round trip an application ping ({"type":"ping"} -> pong) to show
        the connection is alive and logged in."""
        self.send_json({"type": "ping"})
        msg = self.recv_json(timeout)
        return msg.get("type") == "pong"

    # ---- logins -----------------------------------------------------------

    def _sync_login(self, uid, before):
        if self.user_probe is None or before is None:
            return
        deadline = time.monotonic() + 10.0
        while True:
            n = self.user_probe(uid)
            if n is not None and n > before:
                return
            if self.close_received or self.eof:
                raise AssertionError(f"login as {uid!r} refused: closed {self.close_received}")
            if time.monotonic() > deadline:
                raise AssertionError(f"login as {uid!r} not registered within 10s "
                                     f"(GET /users says {n} connections)")
            # A refused login closes the connection: look for that too.
            try:
                op, payload = self.recv(timeout=0.05)
                if op == OP_CLOSE:
                    raise AssertionError(f"login as {uid!r} refused: closed {self.close_received}")
                raise AssertionError(f"unexpected message after seed login: {payload[:200]!r}")
            except TimeoutError:
                pass
            except ConnectionClosed:
                raise AssertionError(f"login as {uid!r}: connection closed") from None

    def login_uid(self, uid, sync=True):
        """Seed login {"uid": uid}. With sync (and a user_probe set by the
        harness), returns once the server counts the new connection."""
        before = self.user_probe(uid) if (sync and self.user_probe) else None
        self.send_json({"uid": uid})
        self._sync_login(uid, before)

    def login_token(self, token, event=None, sync=True):
        """Seed login {"token": token, "event": event} (auth.mode none: the
        user is the token itself)."""
        before = self.user_probe(token) if (sync and self.user_probe) else None
        msg = {"token": token}
        if event is not None:
            msg["event"] = event
        self.send_json(msg)
        self._sync_login(token, before)

    def login_native(self, token, events=None, timeout=5.0):
        """Native login; returns the welcome message (asserted to be one)."""
        msg = {"type": "auth", "token": token}
        if events is not None:
            msg["events"] = events
        self.send_json(msg)
        welcome = self.recv_json(timeout)
        if welcome.get("type") != "welcome":
            raise AssertionError(f"expected a welcome, got {welcome!r}")
        return welcome

    # ---- teardown -----------------------------------------------------------

    def close(self, code=1000, timeout=2.0):
        """Polite close: send a close frame, wait briefly for the answer."""
        if self.sock is None:
            return
        try:
            if not self.close_sent and not self.eof:
                self.send_close(code)
                try:
                    self.expect_close(timeout)
                except (AssertionError, ProtocolError, OSError):
                    pass
        except OSError:
            pass
        finally:
            self.abort()

    def abort(self, reset=False):
        """Drop the TCP connection without a close frame; reset=True sends
        an RST (SO_LINGER 0) like a crashed client."""
        if self.sock is None:
            return
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass
        self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
