#!/usr/bin/python3
"""Interop check of mod_websocket with the Python `websockets` library.

    /usr/bin/python3 t/interop/python_client.py URL [--cafile FILE | --insecure]
                                                    [--subprotocol NAME]
                                                    [--too-big URL_WITH_LIMIT_1000]
                                                    [--deflate MODE]
                                                    [--expect-extension TEXT]

URL is ws://host:port/echo or wss://host:port/echo (the echo plugin).  For
wss:// pass --cafile with the CA that signed the server certificate (the
Apache::Test suite generates one at configure time, t/conf/ssl/ca/asf/certs/
ca.crt), or --insecure to skip verification (only for a server whose
certificate nobody can check, e.g. a throw-away self-signed one).

Checks, in one connection: text (ASCII and non-ASCII), binary messages of
0, 125, 126, 65535, 65536 and 1 MiB bytes echoed exactly, a fragmented
text and binary send (the server reassembles, the echo comes back whole),
a ping answered by a pong with the same data, then a close with code 4001
and a reason: the server must answer with a close frame carrying 4001.
With --too-big URL, a 1001-byte message to URL (a location with
WebSocketMaxMessageSize 1000) must get the server's close 1009.

Compression (permessage-deflate, RFC 7692): websockets offers it by
default (--deflate default: its own offer, client_max_window_bits and
memLevel 5); --deflate none offers nothing; --deflate nct10 offers
server_ and client_no_context_takeover and 10-bit windows both ways.
--expect-extension TEXT checks the server's answer (the
Sec-WebSocket-Extensions header; "none" when absent); when it negotiated
permessage-deflate, every non-empty message the server sends must come
compressed (RSV1 on its first frame), and a 1 MiB compressible message
must take a small part of that on the wire.

Prints one line per check; exits 0 only when every check passed, 1
otherwise (2 on usage errors).  Always bounded in time.
"""
import argparse
import asyncio
import hashlib
import os
import ssl
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode

TIMEOUT = 10          # seconds for any single step
failures = []


def report(ok, what, detail=""):
    print(("ok     " if ok else "FAILED ") + what + (": " + detail if detail and not ok else ""),
          flush=True)
    if not ok:
        failures.append(what)


def describe(data):
    if isinstance(data, str):
        return "text of %d chars" % len(data)
    if isinstance(data, (bytes, bytearray)):
        return "binary of %d bytes (sha1 %s)" % (len(data), hashlib.sha1(data).hexdigest()[:12])
    return repr(type(data))


async def step(coro):
    return await asyncio.wait_for(coro, TIMEOUT)


async def echo(ws, what, payload, send=None):
    """Send payload (or the fragments `send`), expect payload back exactly."""
    try:
        await step(ws.send(send if send is not None else payload))
        got = await step(ws.recv())
    except Exception as e:  # noqa: BLE001 - report any failure
        report(False, what, "%s: %s" % (type(e).__name__, e))
        return False
    ok = type(got) is type(payload) and got == payload
    report(ok, what, "sent %s, got %s" % (describe(payload), describe(got)))
    return ok


async def fragments(parts):
    for p in parts:
        await asyncio.sleep(0)
        yield p


def deflate_kwargs(mode):
    """websockets.connect arguments for --deflate MODE."""
    if mode == "none":
        return dict(compression=None)
    if mode == "nct10":
        return dict(compression=None, extensions=[ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=10, client_max_window_bits=10)])
    return {}                    # websockets' default offer


# data frames the server sent, by whether RSV1 marked them compressed
# (first frames of messages only), and the non-empty messages among them
frame_stats = {"compressed": 0, "plain": 0, "plain_nonempty": 0}


def count_compressed_frames(ws):
    """Wrap the permessage-deflate decoder to see RSV1 on what arrives."""
    ext = ws.extensions[0]
    decode = ext.decode

    def counting_decode(frame, *, max_size=None):
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            if frame.rsv1:
                frame_stats["compressed"] += 1
            else:
                frame_stats["plain"] += 1
                if frame.data:
                    frame_stats["plain_nonempty"] += 1
        return decode(frame, max_size=max_size)
    ext.decode = counting_decode


async def run(url, ssl_ctx, subprotocol, deflate="default", expect_extension=None):
    kwargs = dict(subprotocols=[subprotocol, "other"] if subprotocol else None,
                  max_size=4 * 1024 * 1024, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                  ping_interval=None)
    kwargs.update(deflate_kwargs(deflate))
    if ssl_ctx is not None:
        kwargs["ssl"] = ssl_ctx
    try:
        ws = await websockets.connect(url, **kwargs)
    except Exception as e:  # noqa: BLE001
        report(False, "connect to " + url, "%s: %s" % (type(e).__name__, e))
        return
    answer = ws.response_headers.get("Sec-WebSocket-Extensions")
    report(True, "connect to %s (websockets %s, extensions %s, subprotocol %s; offer %s, "
           "answer %s)"
           % (url, websockets.__version__,
              [type(x).__name__ for x in ws.extensions] or "none", ws.subprotocol,
              ws.request_headers.get("Sec-WebSocket-Extensions"), answer))
    if expect_extension is not None:
        report((answer or "none") == expect_extension,
               "server answered Sec-WebSocket-Extensions: %s" % expect_extension,
               "got %r" % (answer,))
    deflating = bool(ws.extensions)
    count_wire_bytes(ws)
    if deflating:
        count_compressed_frames(ws)
    if subprotocol:
        # the echo plugin picks the first subprotocol offered
        report(ws.subprotocol == subprotocol, "server chose subprotocol %r" % subprotocol,
               "got %r" % (ws.subprotocol,))

    await echo(ws, "text echo", "Hello, mod_websocket")
    await echo(ws, "empty text echo", "")
    await echo(ws, "non-ASCII text echo",
               "h\u00e9llo w\u00f6rld \u041f\u0440\u0438\u0432\u0435\u0442 "
               "\u4f60\u597d \U0001F600 \u20ac")
    for n in (0, 125, 126, 65535, 65536, 1024 * 1024):
        await echo(ws, "binary echo of %d bytes" % n, os.urandom(n))
    big_text = "".join(chr(0x20 + (i * 7) % 95) for i in range(70000)) + "\u00e9\U0001F600"
    await echo(ws, "text echo of %d chars (16-bit/64-bit lengths)" % len(big_text), big_text)
    # 9 UTF-8 bytes per repetition: a server that fragments its messages
    # (WebSocketFragmentSize) cuts inside multi-byte sequences
    await echo(ws, "text echo of 4,500 bytes of 2/3/4-byte UTF-8 sequences",
               "\u00e9\u20ac\U0001F600" * 500)

    # fragmented sends: websockets sends an iterable as one message in
    # several frames (first frame + continuations, FIN on the last)
    parts = ["frag-one ", "frag-two \u00e9 ", "", "frag-three \U0001F600"]
    await echo(ws, "fragmented text (list of %d fragments)" % len(parts), "".join(parts),
               send=parts)
    bparts = [os.urandom(1000), b"", os.urandom(70000), os.urandom(3)]
    await echo(ws, "fragmented binary (async iterable of %d fragments)" % len(bparts),
               b"".join(bparts), send=fragments(bparts))

    # the connection is still usable after all that
    await echo(ws, "text echo after fragments", "still here")

    if deflating:
        # 1 MiB of compressible text: its echo takes a small part of that
        # on the wire (bytes read by the transport's protocol)
        big = "".join('{"id":%d,"name":"user%d","ok":true},' % (i, i % 50)
                      for i in range(40000))[:1024 * 1024]
        before = wire_bytes(ws)
        await echo(ws, "1 MiB compressible text echo", big)
        got = wire_bytes(ws) - before
        print("       1 MiB echo: %d bytes on the wire from the server" % got, flush=True)
        report(0 < got < 200 * 1024, "1 MiB echo came compressed",
               "%d bytes on the wire" % got)
        report(frame_stats["plain_nonempty"] == 0 and frame_stats["compressed"] > 0,
               "server compressed every non-empty message (%d compressed, %d empty "
               "uncompressed)" % (frame_stats["compressed"], frame_stats["plain"]),
               "%r" % frame_stats)

    # ping: the server must answer with a pong carrying the same data
    try:
        waiter = await step(ws.ping(b"ping-data-\x00\xff"))
        await step(waiter)
        report(True, "ping answered by pong")
    except Exception as e:  # noqa: BLE001
        report(False, "ping answered by pong", "%s: %s" % (type(e).__name__, e))
    try:
        waiter = await step(ws.ping())
        await step(waiter)
        report(True, "empty ping answered by pong")
    except Exception as e:  # noqa: BLE001
        report(False, "empty ping answered by pong", "%s: %s" % (type(e).__name__, e))

    # closing handshake started by the client
    reason = "client done \u00e9"
    try:
        await step(ws.close(code=4001, reason=reason))
    except Exception as e:  # noqa: BLE001
        report(False, "close(4001)", "%s: %s" % (type(e).__name__, e))
    rcvd = getattr(ws, "close_rcvd", None)
    code, got_reason = ws.close_code, ws.close_reason
    print("       close frame received: %r, close_code %r, close_reason %r, close_rcvd_then_sent %r"
          % (rcvd, code, got_reason, getattr(ws, "close_rcvd_then_sent", None)), flush=True)
    report(rcvd is not None, "server answered with a close frame",
           "no close frame received (connection dropped?)")
    report(code == 4001, "server's close frame carries code 4001", "got %r" % (code,))
    # RFC 6455 5.5.1: the reply "typically" echoes the status code; the
    # reason is the server's to choose, but it must be valid (websockets
    # already checked the UTF-8): accept empty or our own reason.
    report(got_reason in ("", reason), "server's close reason is empty or ours",
           "got %r" % (got_reason,))
    report(getattr(ws, "close_rcvd_then_sent", False) is False,
           "we sent the first close (server only replied)", "server closed first")
    # websockets waits for the TCP close by the server after the handshake
    # (close_timeout); wait_closed must be done by now
    try:
        await step(ws.wait_closed())
        report(True, "TCP connection closed")
    except Exception as e:  # noqa: BLE001
        report(False, "TCP connection closed", "%s: %s" % (type(e).__name__, e))


def wire_bytes(ws):
    """Bytes the connection's stream reader has been given so far."""
    return getattr(ws, "_wire_bytes", 0)


def count_wire_bytes(ws):
    """Count what the transport delivers to the protocol."""
    data_received = ws.data_received

    def counting(data):
        ws._wire_bytes = getattr(ws, "_wire_bytes", 0) + len(data)
        return data_received(data)
    ws.data_received = counting


async def too_big(url, ssl_ctx):
    """A message over the location's WebSocketMaxMessageSize (1000) must
    get the server's close frame with 1009 (and no echo)."""
    what = "binary of 1001 bytes over WebSocketMaxMessageSize 1000 -> close 1009"
    kwargs = dict(open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None)
    if ssl_ctx is not None:
        kwargs["ssl"] = ssl_ctx
    try:
        ws = await websockets.connect(url, **kwargs)
    except Exception as e:  # noqa: BLE001
        report(False, what, "connect to %s: %s: %s" % (url, type(e).__name__, e))
        return
    got = None
    try:
        await step(ws.send(os.urandom(1001)))
        got = await step(ws.recv())
    except websockets.ConnectionClosed:
        pass
    except Exception as e:  # noqa: BLE001
        report(False, what, "%s: %s" % (type(e).__name__, e))
        await ws.close()
        return
    await step(ws.wait_closed())
    print("       %s: close frame received %r" % (url, ws.close_rcvd), flush=True)
    report(got is None and ws.close_rcvd is not None and ws.close_rcvd.code == 1009, what,
           "echo %s, close frame %r" % (describe(got) if got is not None else "none", ws.close_rcvd))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--cafile", help="CA certificate to verify a wss:// server with")
    g.add_argument("--insecure", action="store_true",
                   help="do not verify the wss:// server certificate")
    ap.add_argument("--subprotocol", help="offer this subprotocol (then \"other\") and "
                    "expect the server to choose it")
    ap.add_argument("--too-big", metavar="URL", help="also check that URL (a location with "
                    "WebSocketMaxMessageSize 1000) closes with 1009 on a 1001-byte message")
    ap.add_argument("--deflate", choices=("default", "none", "nct10"), default="default",
                    help="permessage-deflate offer: websockets' default, none, or no "
                    "context takeover with 10-bit windows")
    ap.add_argument("--expect-extension", metavar="TEXT",
                    help="the server's Sec-WebSocket-Extensions answer (\"none\": absent)")
    args = ap.parse_args()

    ssl_ctx = None
    if args.url.startswith("wss://"):
        if args.insecure:
            ssl_ctx = ssl.create_default_context()
            ssl_ctx.check_hostname = False
            ssl_ctx.verify_mode = ssl.CERT_NONE
        else:
            ssl_ctx = ssl.create_default_context(cafile=args.cafile)
    elif not args.url.startswith("ws://"):
        print("URL must be ws:// or wss://", file=sys.stderr)
        return 2

    try:
        asyncio.run(asyncio.wait_for(run(args.url, ssl_ctx, args.subprotocol, args.deflate,
                                         args.expect_extension), 25))
        if args.too_big:
            asyncio.run(asyncio.wait_for(too_big(args.too_big, ssl_ctx), 15))
    except Exception as e:  # noqa: BLE001 - e.g. the overall timeout
        report(False, "run to completion", "%s: %s" % (type(e).__name__, e))
    if failures:
        print("%d check(s) FAILED: %s" % (len(failures), "; ".join(failures)), flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
