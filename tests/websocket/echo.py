"""A real WebSocket server and client (the `websockets` library) for the end-to-end tests.

    python3 echo.py serve                  # prints "port N"; echoes every message, and
                                           # answers "whoami" with the X-Consumer-Id it saw
    python3 echo.py talk URL [KEY]         # sends "hello" and "whoami", prints JSON replies
    python3 echo.py hold URL [KEY]         # connects, then prints how the connection ended
"""

import asyncio
import json
import sys
import time

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


async def echo(connection):
    consumer = connection.request.headers.get("x-consumer-id", "-")
    async for message in connection:
        await connection.send(consumer if message == "whoami" else "echo:" + message)


async def run_server():
    async with serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print("port %d" % port, flush=True)
        await asyncio.Future()


def headers(key):
    return {"x-api-key": key} if key else {}


async def talk(url, key):
    try:
        async with connect(url, additional_headers=headers(key), open_timeout=10) as ws:
            await ws.send("hello")
            first = await ws.recv()
            await ws.send("whoami")
            second = await ws.recv()
            print(json.dumps({"replies": [first, second]}), flush=True)
    except websockets.exceptions.InvalidStatus as refused:
        print(json.dumps({"status": refused.response.status_code}), flush=True)


async def hold(url, key):
    async with connect(url, additional_headers=headers(key), open_timeout=10) as ws:
        print("open", flush=True)
        start = time.monotonic()
        try:
            await ws.recv()
            how = "message"
        except websockets.exceptions.ConnectionClosed:
            how = "closed"
        print(json.dumps({"end": how, "after_s": time.monotonic() - start}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "serve":
        asyncio.run(run_server())
    else:
        key = sys.argv[3] if len(sys.argv) > 3 else None
        asyncio.run((talk if mode == "talk" else hold)(sys.argv[2], key))
