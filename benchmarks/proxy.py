"""A latency-injecting TCP proxy for the benchmark (loopback only).

Every chunk read from one side is written to the other side ``rtt / 2`` seconds
after it was read, in the order it was read, in each direction; so a request and
its reply take one full RTT more than without the proxy.  Each connection has
its own two pumps (client -> server, server -> client) on one asyncio loop, so a
delay on one connection never holds up another: chunks are queued with their
due time and the writer sleeps only until the head of its own queue is due.

The proxy models latency only: no bandwidth limit, no loss, and TCP windows are
those of loopback (the proxy reads as fast as it can and buffers without limit).

Run it on its own (``bench.py`` starts it as a child process)::

    python benchmarks/proxy.py --target 127.0.0.1:2525 --rtt 20

It binds 127.0.0.1 on a free port (or ``--port``), prints that port on one line
of stdout once it listens, and runs until it is terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

_CHUNK = 1 << 16


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy reader to writer, each chunk delayed by *delay* seconds from its read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read_side() -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except OSError:
            queue.put_nowait((loop.time() + delay, b""))

    reading = asyncio.create_task(read_side())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:  # EOF from the reading side: half-close after the delay
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except OSError:
        return
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def serve(
    target_host: str, target_port: int, rtt: float, port: int = 0
) -> asyncio.Server:
    """Start the proxy; *rtt* is in seconds and each direction gets half of it."""
    delay = rtt / 2
    # asyncio keeps a connection's task only while the client side is connected, and
    # a StreamReader only weakly: without this set a connection whose client closed
    # first could be garbage-collected while it still waits for the server.
    running: set[asyncio.Task[None]] = set()

    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            running.add(task)
            task.add_done_callback(running.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                target_host, target_port
            )
        except OSError:
            await _close(client_writer)
            return
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, delay),
                _pump(server_reader, client_writer, delay),
            )
        finally:
            await _close(server_writer)
            await _close(client_writer)

    return await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    if host not in {"127.0.0.1", "localhost", "::1"}:
        sys.exit("proxy.py: the target must be on loopback")
    server = await serve(host, int(port), args.rtt / 1000, args.port)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Runs until SIGTERM, whose default action ends the process at once.
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--rtt", type=float, required=True, help="round trip, ms")
    parser.add_argument("--port", type=int, default=0, help="listen port (0: free)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
