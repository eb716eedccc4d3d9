"""The attacks of issue 12 at once against one daemon, from a process of its own, until SIGTERM:
DNS-over-TCP clients that pipeline and never read, DNS-over-TCP clients that trickle a byte at a
time, HTTP clients with slow oversized heads and many partial requests, and gzip bombs."""

from __future__ import annotations

import asyncio
import resource
import signal
import struct
import sys
import zlib

import dns.message

ZONE = "discobridge.internal"


def query() -> bytes:
    wire = dns.message.make_query(f"orders.{ZONE}", "A").to_wire()
    return struct.pack("!H", len(wire)) + wire


async def pipeliners(port: int, stop: asyncio.Event) -> None:
    payload = query() * (256 * 1024 // len(query()))
    while not stop.is_set():
        writers = []
        for _ in range(20):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            writer.transport.set_write_buffer_limits(high=1 << 30)
            writer.write(payload)
            writers.append(writer)
        await asyncio.sleep(2)
        for writer in writers:
            writer.transport.abort()


async def tricklers(port: int, stop: asyncio.Event) -> None:
    writers = []
    while not stop.is_set():
        while len(writers) < 520:
            try:
                writers.append((await asyncio.open_connection("127.0.0.1", port))[1])
            except OSError:
                break
        for writer in writers:
            if not writer.is_closing():
                writer.write(b"\x00")
        writers = [w for w in writers if not w.is_closing()]
        await asyncio.sleep(4)


async def slow_heads(host: str, port: int, stop: asyncio.Event) -> None:
    header = b"X-Padding: " + b"p" * (8 * 1024 - 14) + b"\r\n"
    while not stop.is_set():
        writers = []
        for n in range(1120):
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            writer.write(b"GET /v1/services HTTP/1.1\r\nHost: x\r\n" + (header * 98 if n < 400 else b""))
            writers.append(writer)
        await asyncio.sleep(5)
        for writer in writers:
            writer.transport.abort()


async def bombs(host: str, port: int, stop: asyncio.Event) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    body = b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()
    request = (
        b"POST /eureka/apps/ORDERS HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (len(body), body)
    while not stop.is_set():

        async def one() -> None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request + chunk + b"0\r\n\r\n")
                await asyncio.wait_for(reader.read(100), 5)
                writer.transport.abort()
            except (OSError, TimeoutError):
                pass

        await asyncio.gather(*(one() for _ in range(8)))


async def main(dns_port: int, http_host: str, http_port: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    attacks = [
        pipeliners(dns_port, stop),
        tricklers(dns_port, stop),
        slow_heads(http_host, http_port, stop),
        bombs(http_host, http_port, stop),
    ]
    tasks = [asyncio.create_task(a) for a in attacks]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
