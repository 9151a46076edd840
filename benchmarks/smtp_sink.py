"""A minimal, fast SMTP sink for benchmarks: aiosmtpd on 127.0.0.1 that counts and discards.

Run it as its own process (`python -m benchmarks.smtp_sink`), so the server's CPU is not
charged to the process under measurement. It prints `READY <port>` once listening, then
answers commands read from stdin, one per line, with one line on stdout:

- `count`  → `<messages> <bytes>` received so far
- `reset`  → zeroes the counters, answers `0 0`
- `dump PATH` → writes the first `KEEP` messages received (as received, each preceded by
  its length on a line of its own) to PATH, answers `<messages kept> <bytes>`: the floor
  replays the end-to-end run's own messages
- end of input (the benchmark exits or closes the pipe) → the sink stops.

aiosmtpd is used as is (a well-kept server); the only hand-written part is this tiny
stdin control channel, because aiosmtpd has no "how many did you get" query of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

KEEP = 256  # messages kept for `dump`


class CountingHandler:
    """Accepts every message, keeps counts and the first KEEP messages."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.kept: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        self.messages += 1
        self.bytes += len(data)
        if len(self.kept) < KEEP:
            self.kept.append(data)
        return "250 2.0.0 OK"


async def serve(host: str, port: int) -> None:
    """Listen, print READY, answer stdin commands until stdin closes."""
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.local", data_size_limit=50 * 1024 * 1024),
        host=host,
        port=port,
        backlog=256,
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = line.decode().strip()
        if command == "reset":
            handler.messages = handler.bytes = 0
            handler.kept = []
        if command in ("count", "reset"):
            sys.stdout.write(f"{handler.messages} {handler.bytes}\n")
            sys.stdout.flush()
        if command.startswith("dump "):
            with open(command[5:], "wb") as out:
                for message in handler.kept:
                    out.write(b"%d\n" % len(message) + message)
            size = sum(len(m) for m in handler.kept)
            sys.stdout.write(f"{len(handler.kept)} {size}\n")
            sys.stdout.flush()
    server.close()
    await server.wait_closed()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
