"""A misbehaving nova metadata API for fault tests: slow for some instances, resetting
connections, or answering bytes that are not HTTP; or with a bodiless status for some paths.

Raw asyncio, not an HTTP library, so that it can break the protocol on purpose. Healthy
answers are `{"uuid": <X-Instance-ID>}`, enough for a test to tell whose data came back.

    python -m ovnmeta_testing.faultynova --port P --mode ok|reset|garbage [--slow IID=SECONDS]
        [--empty PATH=STATUS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct


def _header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode(errors="replace")
    return ""


class FaultyNova:
    def __init__(self, mode: str, slow: dict[str, float],
                 empty: dict[str, int] | None = None) -> None:
        self.mode, self.slow, self.empty = mode, slow, empty or {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(_header(head, b"content-length") or 0)
                if length:
                    await reader.readexactly(length)
                if self.mode == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if self.mode == "garbage":
                    writer.write(b"this is not HTTP at all\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                instance = _header(head, b"x-instance-id")
                await asyncio.sleep(self.slow.get(instance, 0))
                path = head.split(b" ", 2)[1].decode(errors="replace")
                if path in self.empty:   # nova's empty answers: a 200 with no body, a 204
                    code = self.empty[path]
                    length = b"" if code == 204 else b"Content-Length: 0\r\n"
                    writer.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (
                        code, b"No Content" if code == 204 else b"OK", length))
                    await writer.drain()
                    continue
                body = json.dumps({"uuid": instance}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def _main(port: int, mode: str, slow: dict[str, float], empty: dict[str, int]) -> None:
    nova = FaultyNova(mode, slow, empty)
    server = await asyncio.start_server(nova.handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["ok", "reset", "garbage"], default="ok")
    parser.add_argument("--slow", action="append", default=[],
                        help="IID=SECONDS: answer this instance after SECONDS")
    parser.add_argument("--empty", action="append", default=[],
                        help="PATH=STATUS: answer this path with STATUS (200 or 204), no body")
    args = parser.parse_args()
    slow = {k: float(v) for k, _, v in (s.partition("=") for s in args.slow)}
    empty = {k: int(v) for k, _, v in (s.rpartition("=") for s in args.empty)}
    asyncio.run(_main(args.port, args.mode, slow, empty))


if __name__ == "__main__":
    main()
