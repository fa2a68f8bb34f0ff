"""Open N keep-alive connections to 127.0.0.1:PORT, make one request on each, then hold them
idle until killed. Touches READY_FILE once all are open. With `tls`, the connections are
HTTPS (certificate not verified: the benchmark's own).
usage: idle_conns.py PORT N READY_FILE [tls]"""
import asyncio
import pathlib
import ssl
import sys

port, count, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = None
if sys.argv[4:] == ["tls"]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])


async def one():
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def main():
    held = []
    for start in range(0, count, 100):
        held += await asyncio.gather(*(one() for _ in range(start, min(start + 100, count))))
    pathlib.Path(ready).touch()
    await asyncio.sleep(3600)


asyncio.run(main())
