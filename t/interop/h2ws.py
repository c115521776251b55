"""A small, synchronous RFC 8441 WebSocket client on Debian's python3-h2.

Used by t/interop/h2_client.py (the checks of t/h2_websocket.t) and by
bench/h2bench (the HTTP/2 vs HTTP/1.1 benchmark).  No event loop: one
socket, select(), and the h2 state machine; every wait is bounded.

    conn = H2Conn("127.0.0.1", 8529)                  # h2c, prior knowledge
    conn = H2Conn(host, port, tls=True, cafile=ca)    # h2 over TLS, ALPN
    ws = conn.open_ws("/echo")                        # extended CONNECT
    ws.status                                         # 200 once accepted
    ws.send(OP_TEXT, b"hello"); ws.recv_message()     # (opcode, payload)
    ws.close(1000); ws.wait_close()                   # (code, reason)
    ws.reset()                                        # RST_STREAM CANCEL

WS11 is the same for an HTTP/1.1 upgrade (raw socket, RFC 6455), so that a
test or the benchmark can put both side by side.
"""
import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WSError(Exception):
    pass


def ws_frame(opcode, payload=b"", fin=True, mask=True):
    """One client frame (masked unless mask=False)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    head += key
    body = bytearray(payload)
    for i in range(n):
        body[i] ^= key[i & 3]
    return bytes(head) + bytes(body)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class FrameParser:
    """Incremental parser of server frames (unmasked)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def frames(self):
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                return out
            fin, opcode = b[0] & 0x80, b[0] & 0x0F
            masked, n = b[1] & 0x80, b[1] & 0x7F
            pos = 2
            if n == 126:
                if len(b) < 4:
                    return out
                n = struct.unpack("!H", b[2:4])[0]
                pos = 4
            elif n == 127:
                if len(b) < 10:
                    return out
                n = struct.unpack("!Q", b[2:10])[0]
                pos = 10
            if masked:
                raise WSError("the server sent a masked frame")
            if len(b) < pos + n:
                return out
            out.append((bool(fin), opcode, bytes(b[pos:pos + n])))
            del b[:pos + n]


class Messages:
    """Frames to messages; keeps close and control frames apart."""

    def __init__(self):
        self.parser = FrameParser()
        self.messages = []          # (opcode, payload)
        self.partial = None         # [opcode, bytearray]
        self.close = None           # (code, reason) once a close came
        self.pongs = []

    def feed(self, data):
        self.parser.feed(data)
        for fin, op, payload in self.parser.frames():
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close = (code, payload[2:])
            elif op == OP_PING:
                self.on_ping(payload)
            elif op == OP_PONG:
                self.pongs.append(payload)
            elif op == OP_CONT:
                if self.partial is None:
                    raise WSError("continuation without a first frame")
                self.partial[1] += payload
                if fin:
                    self.messages.append((self.partial[0], bytes(self.partial[1])))
                    self.partial = None
            else:
                if fin:
                    self.messages.append((op, payload))
                else:
                    self.partial = [op, bytearray(payload)]

    def on_ping(self, payload):
        pass


class _H2Connection(h2.connection.H2Connection):
    """h2's connection, but a GOAWAY does not end the streams it lets
    finish (h2 would refuse every frame after it): a server that stops
    gracefully sends GOAWAY and then still closes its WebSockets."""

    def _receive_goaway_frame(self, frame):
        ev = h2.events.ConnectionTerminated()
        ev.error_code = h2.errors._error_code_from_int(frame.error_code)
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        return [], [ev]


class H2Conn:
    """One HTTP/2 connection: h2c with prior knowledge, or h2 over TLS
    (ALPN).  Waits for the server's SETTINGS and checks
    SETTINGS_ENABLE_CONNECT_PROTOCOL."""

    def __init__(self, host, port, tls=False, cafile=None, server_name=None,
                 timeout=10, window=None):
        self.host, self.port, self.tls = host, port, tls
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            if cafile is None:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=server_name or host)
            if sock.selected_alpn_protocol() != "h2":
                raise WSError("ALPN chose %r, not h2" % sock.selected_alpn_protocol())
        self.sock = sock
        self.local_port = sock.getsockname()[1]
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = _H2Connection(config=cfg)
        self.h2.initiate_connection()
        if window:
            self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.h2.increment_flow_control_window(window)
        self.flush()
        self.streams = {}
        self.terminated = None      # GOAWAY (error code, last stream id)
        self.eof = False
        self.got_settings = False
        self.wait(lambda: self.got_settings, "the server's SETTINGS")
        if not self.h2.remote_settings.enable_connect_protocol:
            raise WSError("the server does not offer SETTINGS_ENABLE_CONNECT_PROTOCOL"
                          " (H2WebSockets off?)")

    def authority(self):
        return "%s:%d" % (self.host, self.port)

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout):
        """Read what comes within timeout (at most one read); False on EOF."""
        if self.eof:
            return False
        pending = self.tls and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not r:
                return True
        try:
            data = self.sock.recv(256 * 1024)
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            for s in self.streams.values():
                s.ended = True
            return False
        for ev in self.h2.receive_data(data):
            self.event(ev)
        self.flush()
        return True

    def event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.got_settings = True
            return
        if isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = (ev.error_code, ev.last_stream_id)
            return
        sid = getattr(ev, "stream_id", None)
        s = self.streams.get(sid)
        if s is None:
            if isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
            return
        if isinstance(ev, h2.events.ResponseReceived):
            s.headers = dict(ev.headers)
            s.status = int(s.headers.get(":status", 0))
        elif isinstance(ev, h2.events.DataReceived):
            s.data_in += len(ev.data)
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
            if s.status == 200:
                s.msgs.feed(ev.data)
            else:
                s.body += ev.data
        elif isinstance(ev, h2.events.StreamEnded):
            s.ended = s.end_stream_received = True
        elif isinstance(ev, h2.events.StreamReset):
            s.reset_by_server = ev.error_code
            s.ended = True

    def wait(self, cond, what, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise WSError("timed out waiting for " + what)
            if not self.pump(min(left, 0.5)) and not cond():
                raise WSError("connection closed while waiting for " + what)
        return True

    def open_ws(self, path, headers=(), version="13", wait=True):
        """Extended CONNECT (:protocol websocket) on a new stream."""
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT"), (":protocol", "websocket"),
                (":scheme", "https" if self.tls else "http"),
                (":path", path), (":authority", self.authority())]
        if version is not None:
            hdrs.append(("sec-websocket-version", version))
        hdrs += list(headers)
        s = H2WebSocket(self, sid, path)
        self.streams[sid] = s
        self.h2.send_headers(sid, hdrs)
        self.flush()
        if wait:
            s.wait_response()
        return s

    def get(self, path):
        """A plain GET (status, headers, body)."""
        sid = self.h2.get_next_available_stream_id()
        s = H2WebSocket(self, sid, path)
        self.streams[sid] = s
        self.h2.send_headers(sid, [(":method", "GET"), (":scheme", "https" if self.tls else "http"),
                                   (":path", path), (":authority", self.authority())],
                             end_stream=True)
        self.flush()
        self.wait(lambda: s.ended, "the response to GET " + path)
        return s.status, s.headers, bytes(s.body)

    def ping(self):
        self.h2.ping(b"h2wsping")
        self.flush()

    def close(self):
        try:
            self.h2.close_connection()
            self.flush()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.sock.close()

    def drop(self):
        """Close the TCP connection abruptly (no GOAWAY)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()
        self.eof = True


class H2WebSocket:
    """A WebSocket on one HTTP/2 stream."""

    def __init__(self, conn, sid, path):
        self.conn, self.sid, self.path = conn, sid, path
        self.headers, self.status = None, None
        self.msgs = Messages()
        self.msgs.on_ping = self._pong
        self.body = bytearray()
        self.data_in = 0
        self.ended = False
        self.end_stream_received = False    # the server's END_STREAM
        self.reset_by_server = None         # RST_STREAM error code
        self.local_closed = False

    def _pong(self, payload):
        if not self.local_closed:
            self.send_raw(ws_frame(OP_PONG, payload))

    def wait_response(self, timeout=None):
        self.conn.wait(lambda: self.status is not None or self.ended,
                       "the response on stream %d" % self.sid, timeout)
        return self.status

    def send_raw(self, data, end_stream=False):
        """DATA frames within the flow-control windows."""
        h = self.conn.h2
        view = memoryview(data)
        deadline = time.monotonic() + self.conn.timeout
        while True:
            n = min(h.local_flow_control_window(self.sid), h.max_outbound_frame_size, len(view))
            if n > 0 or (len(view) == 0 and end_stream):
                last = n == len(view)
                h.send_data(self.sid, bytes(view[:n]), end_stream=end_stream and last)
                view = view[n:]
                if last:
                    break
                continue
            self.conn.flush()
            if time.monotonic() > deadline:
                raise WSError("flow control: no window on stream %d" % self.sid)
            if not self.conn.pump(0.5) or self.ended:
                raise WSError("stream %d ended while sending" % self.sid)
        self.conn.flush()

    def send(self, opcode, payload, fin=True):
        self.send_raw(ws_frame(opcode, payload, fin))

    def recv_message(self, timeout=None):
        """The next message (opcode, payload), or None (timeout, close)."""
        try:
            self.conn.wait(lambda: self.msgs.messages or self.msgs.close or self.ended,
                           "a message on stream %d" % self.sid, timeout)
        except WSError:
            return None
        if self.msgs.messages:
            return self.msgs.messages.pop(0)
        return None

    def close(self, code=1000, reason=b"", end_stream=False):
        """Send a close frame (nothing when the server already ended the
        stream, as after it failed the WebSocket); with end_stream, our
        side of the stream ends with it (as Chromium does)."""
        if self.ended:
            return
        self.send_raw(ws_frame(OP_CLOSE, close_payload(code, reason)), end_stream)
        if end_stream:
            self.local_closed = True

    def wait_close(self, timeout=None):
        """The server's close frame: (code, reason), or None."""
        try:
            self.conn.wait(lambda: self.msgs.close or self.ended,
                           "a close frame on stream %d" % self.sid, timeout)
        except WSError:
            return None
        return self.msgs.close

    def wait_ended(self, timeout=None):
        try:
            self.conn.wait(lambda: self.ended, "the end of stream %d" % self.sid, timeout)
        except WSError:
            return False
        return True

    def end_stream(self):
        """Our side of the stream ends (END_STREAM), as after a close."""
        if self.local_closed or (self.ended and self.reset_by_server is not None):
            return
        self.local_closed = True
        try:
            self.send_raw(b"", end_stream=True)
        except Exception:  # noqa: BLE001 - the server may have reset it
            pass

    def reset(self, code=h2.errors.ErrorCodes.CANCEL):
        self.conn.h2.reset_stream(self.sid, code)
        self.conn.flush()
        self.local_closed = True


class WS11:
    """RFC 6455 over HTTP/1.1 (raw socket), for comparison and chat."""

    def __init__(self, host, port, path, headers=(), timeout=10):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, host, port, key))
        req += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
        self.sock.sendall(req.encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise WSError("no handshake answer")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WSError("EOF during the handshake: %r" % buf)
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if self.status == 101 and self.headers.get("sec-websocket-accept") != want:
            raise WSError("bad Sec-WebSocket-Accept")
        self.msgs = Messages()
        self.msgs.on_ping = lambda p: self.send(OP_PONG, p)
        self.eof = False
        if rest:
            self.msgs.feed(rest)

    def send(self, opcode, payload, fin=True):
        self.sock.sendall(ws_frame(opcode, payload, fin))

    def pump(self, timeout):
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if r:
            try:
                data = self.sock.recv(256 * 1024)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                return False
            self.msgs.feed(data)
        return True

    def recv_message(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.msgs.messages and not self.msgs.close:
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.5)):
                break
        return self.msgs.messages.pop(0) if self.msgs.messages else None

    def close(self, code=1000):
        try:
            self.send(OP_CLOSE, close_payload(code))
        except OSError:
            pass

    def wait_close(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.msgs.close:
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(left, 0.5)):
                break
        return self.msgs.close
