#!/usr/bin/python3
"""RFC 8441 checks of mod_websocket through mod_http2 (t/h2_websocket.t,
t/h2_restart.t), with Debian's python3-h2 (t/interop/h2ws.py).

    h2_client.py TARGET MODE [options]

TARGET is h2c://host:port (HTTP/2 over cleartext with prior knowledge) or
h2://host:port (HTTP/2 over TLS, ALPN "h2"; --cafile CA to verify the
certificate, else it is not verified).  MODE:

  streams   a warm-up request, then eight WebSockets on one connection at
            once (/echo): text, a 70,000-byte binary, close 1000 on each,
            and both ends of each stream ended; a subprotocol
            (/interop-frag, whose echo comes back fragmented), the origin
            check (/rfc6455/origin-same), WebSocketMaxMessageSize
            (/interop-small: 1009), hixie-76 and hixie-75 over HTTP/2
            (400), an unsupported version (426).
  limit     a fresh connection opens eight at once: how many mod_http2
            serves at once (its per-connection limit starts at 6), and
            that the others are served once one ends.
  rst       /hardening/lifecycle: a stream reset (RST_STREAM CANCEL) in
            the middle of a message; 1.5 s later a new stream on the same
            connection echoes and closes.  Prints "port N" (the lifecycle
            plugin's id of both).
  drop      /hardening/lifecycle: two streams, then the TCP connection is
            dropped (no GOAWAY).  Prints "port N".
  restart   /hardening/lifecycle: three streams, prints "ready port N",
            then waits (--wait s) for the server's close on each: 1001.
  echo      one WebSocket on /echo: a text echoed, close 1000.
  chat      /chat with this client on HTTP/2 and one on HTTP/1.1 (--h1
            host:port) in the same httpd child (HTTP/1.1 clients are
            opened until one's join notice reaches the HTTP/2 one):
            messages both ways, and the departure notice.

Prints "ok     ..." / "FAILED ..." per check and "all checks passed" at
the end when everything passed (exit 0; 1 otherwise).  Bounded in time.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2ws  # noqa: E402
from h2ws import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, ws_frame  # noqa: E402

failures = []


def report(ok, what, detail=""):
    print(("ok     " if ok else "FAILED ") + what
          + (": " + str(detail) if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(what)
    return ok


def connect(args, fresh=False):
    tls = args.scheme == "h2"
    c = h2ws.H2Conn(args.host, args.port, tls=tls, cafile=args.cafile,
                    server_name=args.server_name, timeout=10)
    if not fresh:
        warm_up(c)
    return c


def warm_up(c):
    """mod_http2 runs at most 6 streams of a new connection at once and
    raises that (doubling) when a stream completes at least 100 ms after
    the last change: a few requests make room for more WebSockets (one
    would do for 8; not every completion is counted)."""
    for _ in range(3):
        time.sleep(0.25)
        c.get("/")


def origin_of(args):
    return "%s://%s:%d" % ("https" if args.scheme == "h2" else "http", args.host, args.port)


def payload(i, n):
    return bytes((i * 7 + k * 13) & 0xFF for k in range(n))


def end_both_ways(ws, what):
    """After the closing handshake: the server ended its side of the
    stream (END_STREAM) and we end ours; no reset with an error."""
    ws.end_stream()
    ended = ws.wait_ended(5)
    report(ended and ws.end_stream_received and ws.reset_by_server in (None, 0),
           what, "ended=%s END_STREAM=%s reset=%s"
           % (ended, ws.end_stream_received, ws.reset_by_server))


def mode_streams(args):
    c = connect(args)
    report(True, "%s connection (%s), SETTINGS_ENABLE_CONNECT_PROTOCOL=1"
           % (args.scheme, "ALPN h2" if args.scheme == "h2" else "prior knowledge"))
    streams = [c.open_ws("/echo", wait=False) for _ in range(8)]
    for s in streams:
        s.wait_response()
    report(all(s.status == 200 for s in streams),
           "8 extended CONNECTs on one connection answered :status 200",
           [s.status for s in streams])
    hidden = [h for s in streams for h in (s.headers or {})
              if h in ("sec-websocket-accept", "upgrade", "connection")]
    report(not hidden, "no HTTP/1.1 upgrade headers in the HTTP/2 answers", hidden)

    texts = ["stream %d: h\u00e9llo \u4e16\u754c \U0001F600" % s.sid for s in streams]
    for s, t in zip(streams, texts):
        s.send(OP_TEXT, t.encode("utf-8"))
    got = [s.recv_message() for s in streams]
    report(got == [(OP_TEXT, t.encode("utf-8")) for t in texts],
           "text echoed on each of the 8 (sent on all before reading)")

    blobs = [payload(s.sid, 70000) for s in streams]
    for s, b in zip(streams, blobs):
        s.send(OP_BINARY, b)
    got = [s.recv_message(20) for s in streams]
    report(got == [(OP_BINARY, b) for b in blobs],
           "70,000-byte binary echoed on each of the 8",
           [len(g[1]) if g else None for g in got])

    # half of them end their side of the stream with the close frame, as
    # Chromium does: the server's answer must still come
    for i, s in enumerate(streams):
        s.close(1000, "bye %d" % s.sid, end_stream=i % 2 == 1)
    closes = [s.wait_close() for s in streams]
    report(all(cl and cl[0] == 1000 for cl in closes),
           "close 1000 answered with 1000 on each of the 8 (4 of them sent "
           "END_STREAM with their close frame)", closes)
    for s in streams:
        end_both_ways(s, "stream %d ended in both directions" % s.sid)

    # a subprotocol, and the server's fragmentation
    s = c.open_ws("/interop-frag", headers=[("sec-websocket-protocol", "chat.v1, other")])
    report(s.status == 200 and (s.headers or {}).get("sec-websocket-protocol") == "chat.v1",
           "subprotocol chat.v1 chosen", s.headers)
    text = ("fragment me \u00e9 " * 300).encode("utf-8")
    s.send(OP_TEXT, text)
    report(s.recv_message() == (OP_TEXT, text),
           "3,900-byte text echoed in 1000-byte frames (/interop-frag)")
    s.close(1000)
    s.wait_close()
    s.end_stream()

    # the origin check
    bad = c.open_ws("/rfc6455/origin-same", headers=[("origin", "http://evil.example")])
    report(bad.status == 403, "Origin http://evil.example -> 403", bad.status)
    good = c.open_ws("/rfc6455/origin-same", headers=[("origin", origin_of(args))])
    report(good.status == 200, "Origin %s -> 200" % origin_of(args), good.status)
    good.close(1000)
    good.wait_close()
    good.end_stream()

    # WebSocketMaxMessageSize 1000
    s = c.open_ws("/interop-small")
    s.send(OP_BINARY, b"x" * 1001)
    cl = s.wait_close()
    report(cl is not None and cl[0] == 1009, "1001 bytes to /interop-small -> close 1009", cl)
    if cl:
        s.close(cl[0])
        s.end_stream()

    # the hixie drafts are HTTP/1.1 only
    h76 = c.open_ws("/echo", version=None, headers=[
        ("sec-websocket-key1", "4 @1  46546xW%0l 1 5"),
        ("sec-websocket-key2", "12998 5 Y3 1  .P00"),
        ("origin", origin_of(args))])
    report(h76.status == 400, "hixie-76 over HTTP/2 -> 400", h76.status)
    h75 = c.open_ws("/echo", version=None, headers=[("origin", origin_of(args))])
    report(h75.status == 400, "hixie-75 over HTTP/2 -> 400", h75.status)
    v12 = c.open_ws("/echo", version="12")
    report(v12.status == 426 and (v12.headers or {}).get("sec-websocket-version") == "13, 8, 7",
           "Sec-WebSocket-Version 12 -> 426, Sec-WebSocket-Version: 13, 8, 7",
           (v12.status, v12.headers))

    # the connection still serves after all that
    s = c.open_ws("/echo")
    s.send(OP_TEXT, b"still here")
    report(s.recv_message() == (OP_TEXT, b"still here"), "the connection still serves")
    s.close(1000)
    s.wait_close()
    s.end_stream()
    c.close()


def mode_limit(args):
    c = connect(args, fresh=True)
    streams = [c.open_ws("/echo", wait=False) for _ in range(8)]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        c.pump(0.1)
    first = [s for s in streams if s.status == 200]
    print("answered at once on a fresh connection: %d of 8" % len(first), flush=True)
    report(len(first) >= 6, "a fresh connection serves at least 6 at once", len(first))
    if first:
        first[0].close(1000)
        first[0].wait_close()
        first[0].end_stream()
    for s in streams:
        s.wait_response(5)
    report(all(s.status == 200 for s in streams),
           "the others are served once one ended", [s.status for s in streams])
    for s in streams[1:]:
        s.send(OP_TEXT, b"ping %d" % s.sid)
        if s.recv_message() != (OP_TEXT, b"ping %d" % s.sid):
            report(False, "echo on stream %d" % s.sid)
        s.close(1000)
    for s in streams[1:]:
        s.wait_close()
        s.end_stream()
    c.close()


def mode_rst(args):
    c = connect(args)
    print("port %d" % c.local_port, flush=True)
    a = c.open_ws("/hardening/lifecycle")
    a.send(OP_TEXT, b"before the reset")
    report(a.status == 200 and a.recv_message() == (OP_TEXT, b"before the reset"),
           "stream A open and echoing")
    # the middle of a message: a first fragment, then half of a frame
    a.send(OP_TEXT, b"the first part of ", fin=False)
    a.send_raw(ws_frame(OP_CONT, b"y" * 4000)[:2000])
    a.reset()
    report(True, "RST_STREAM (CANCEL) in the middle of a message")
    time.sleep(1.5)
    c.ping()
    b = c.open_ws("/hardening/lifecycle")
    b.send(OP_TEXT, b"after the reset")
    report(b.status == 200 and b.recv_message() == (OP_TEXT, b"after the reset"),
           "a new stream on the same connection echoes")
    b.close(1000)
    cl = b.wait_close()
    report(cl is not None and cl[0] == 1000, "and closes with 1000", cl)
    end_both_ways(b, "stream B ended in both directions")
    c.close()


def mode_drop(args):
    c = connect(args)
    print("port %d" % c.local_port, flush=True)
    streams = [c.open_ws("/hardening/lifecycle") for _ in range(2)]
    for s in streams:
        s.send(OP_TEXT, b"hello %d" % s.sid)
    report(all(s.recv_message() == (OP_TEXT, b"hello %d" % s.sid) for s in streams),
           "two streams open and echoing")
    c.drop()
    report(True, "TCP connection dropped (no GOAWAY)")


def mode_restart(args):
    c = connect(args)
    streams = [c.open_ws("/hardening/lifecycle") for _ in range(3)]
    for s in streams:
        s.send(OP_TEXT, b"hello %d" % s.sid)
    report(all(s.recv_message() == (OP_TEXT, b"hello %d" % s.sid) for s in streams),
           "three streams open and echoing")
    print("ready port %d" % c.local_port, flush=True)
    t0 = time.monotonic()
    closes = [s.wait_close(args.wait) for s in streams]
    took = time.monotonic() - t0
    report(all(cl and cl[0] == 1001 for cl in closes),
           "close 1001 on each of the 3 streams", closes)
    print("closes after %.1f s" % took, flush=True)
    for s, cl in zip(streams, closes):
        if cl:
            s.close(cl[0])
    for s in streams:
        end_both_ways(s, "stream %d ended in both directions" % s.sid)
    print("GOAWAY: %s" % (c.terminated,), flush=True)
    c.close()


def mode_echo(args):
    c = connect(args, fresh=True)
    s = c.open_ws("/echo")
    s.send(OP_TEXT, b"echo over " + args.scheme.encode())
    report(s.status == 200 and s.recv_message() == (OP_TEXT, b"echo over " + args.scheme.encode()),
           "a WebSocket on /echo echoes", s.status)
    s.close(1000)
    cl = s.wait_close()
    report(cl is not None and cl[0] == 1000, "and closes with 1000", cl)
    end_both_ways(s, "the stream ended in both directions")
    c.close()


def mode_chat(args):
    h1_host, h1_port = args.h1.rsplit(":", 1)
    c = connect(args)
    a = c.open_ws("/chat")
    m = a.recv_message()
    report(a.status == 200 and m and m[0] == OP_TEXT and m[1].endswith(b" joined"),
           "the HTTP/2 client joins /chat and sees its own notice", m)
    b = None
    for _ in range(40):
        cand = h2ws.WS11(h1_host, int(h1_port), "/chat")
        own = cand.recv_message(5)
        if cand.status != 101 or not own or not own[1].endswith(b" joined"):
            report(False, "an HTTP/1.1 client joins /chat", (cand.status, own))
            return
        seen = a.recv_message(0.5)
        if seen and seen[1].endswith(b" joined"):
            b = cand
            break
        cand.close()
        cand.wait_close(2)
    if not report(b is not None, "an HTTP/1.1 client in the same httpd child (its "
                  "join notice reaches the HTTP/2 client)"):
        return
    a.send(OP_TEXT, "from HTTP/2 \u00e9".encode("utf-8"))
    want = (OP_TEXT, "from HTTP/2 \u00e9".encode("utf-8"))
    report(b.recv_message() == want and a.recv_message() == want,
           "HTTP/2 -> both (text)")
    blob = payload(3, 5000)
    b.send(OP_BINARY, blob)
    report(a.recv_message() == (OP_BINARY, blob) and b.recv_message() == (OP_BINARY, blob),
           "HTTP/1.1 -> both (5,000-byte binary)")
    a.close(1000)
    a.wait_close()
    a.end_stream()
    m = b.recv_message()
    report(m is not None and m[1].endswith(b" left"),
           "the HTTP/1.1 client sees the HTTP/2 one leave", m)
    b.close(1000)
    b.wait_close(5)
    c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", help="h2c://host:port or h2://host:port")
    ap.add_argument("mode", choices=["streams", "limit", "rst", "drop", "restart", "echo", "chat"])
    ap.add_argument("--cafile")
    ap.add_argument("--server-name")
    ap.add_argument("--wait", type=float, default=15, help="restart: seconds to wait")
    ap.add_argument("--h1", help="chat: host:port of the HTTP/1.1 side")
    args = ap.parse_args()
    scheme, _, hostport = args.target.partition("://")
    if scheme not in ("h2", "h2c") or ":" not in hostport:
        ap.error("TARGET must be h2c://host:port or h2://host:port")
    args.scheme = scheme
    args.host, port = hostport.rsplit(":", 1)
    args.port = int(port)
    try:
        globals()["mode_" + args.mode](args)
    except Exception as e:  # noqa: BLE001 - any failure is reported
        report(False, "%s: %s" % (type(e).__name__, e))
    if failures:
        print("%d check(s) failed" % len(failures), flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
