"""A fast static HTTP/1.1 server for the download benchmark (asyncio, keep-alive).

The fault-injection server in tests/ is thread-per-connection and tops out near 200
requests/s on this machine, which would measure the server, not the clients. This one
serves GETs from memory with a fixed added latency per request (a far-away host)
and nothing else.
"""

from __future__ import annotations

import asyncio


def run(files: dict[str, bytes], latency: float, port_out, ready) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                path = line.split(" ")[1] if line.count(" ") >= 2 else ""
                close = b"connection: close" in head.lower() or line.endswith("HTTP/1.0")
                if latency:
                    await asyncio.sleep(latency)
                body = files.get(path)
                if body is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                                 b"Content-Length: %d\r\n%s\r\n" % (
                                     len(body), b"Connection: close\r\n" if close else b"") + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.value = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())
