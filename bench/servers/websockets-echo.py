#!/usr/bin/python3
"""bench/servers/websockets-echo.py PORT: the python3-websockets (Debian)
echo server of bench/run.  No compression, no message size limit."""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None,
                                max_size=None, ping_interval=None):
        print("websockets echo on 127.0.0.1:%d" % port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
