"""Hostile SMTP clients on raw sockets (floods without CRLF, over-long command lines, SIZE
lies, slowloris) and the memory of a process (/proc/PID/status), for the listener's limits.

Every client is bounded: a socket timeout on each read, a byte budget on each flood."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_kb(pid: int) -> int:
    """The process's resident memory now (VmRSS), in kB."""
    return _status_kb(pid, "VmRSS")


def peak_kb(pid: int) -> int:
    """The process's peak resident memory (VmHWM) since start or `reset_peak`, in kB."""
    return _status_kb(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux: `5` to /proc/PID/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class RawSmtp:
    """One SMTP connection spoken by hand, so a test can send what no client library would."""

    def __init__(self, host: str, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> bytes:
        """One reply line (b'' once the server has closed the connection)."""
        while b"\r\n" not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                rest, self._buffer = self._buffer, b""
                return rest
            self._buffer += data
            assert len(self._buffer) < 1_000_000, "a reply line without end"
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"

    def reply(self) -> bytes:
        """One whole reply (the lines of a multi-line reply joined)."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"".join(lines)

    def command(self, text: bytes) -> bytes:
        self.sock.sendall(text + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True once the server has closed its side (read until EOF, bounded by the timeout)."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def open_data(self, rcpt: str, mail_from: str = "", size: int | None = None) -> None:
        """Greeting, EHLO, MAIL, RCPT and DATA, each answered as expected; then the message."""
        assert self.line().startswith(b"220 "), "no greeting"
        assert self.command(b"EHLO mx.example.net").startswith(b"250")
        size_param = f" SIZE={size}" if size is not None else ""
        reply = self.command(f"MAIL FROM:<{mail_from}>{size_param}".encode())
        assert reply.startswith(b"250"), reply
        assert self.command(f"RCPT TO:<{rcpt}>".encode()).startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")


@dataclass
class Flood:
    """How a flood ended: the first reply line the server sent while it went on (b'' if
    none), the bytes sent by then, and whether the server closed the connection."""

    reply: bytes
    sent: int
    closed: bool


def flood(conn: RawSmtp, pattern: bytes, total: int, end: bytes = b"\r\n.\r\n") -> Flood:
    """Send `pattern` repeated up to `total` bytes, stopping as soon as the server answers
    or closes (a reader thread watches meanwhile); a server still silent after `total`
    bytes is sent `end` (the end of DATA), so that any server answers in the end."""
    answered = threading.Event()
    reply: list[bytes] = []

    def read() -> None:
        try:
            reply.append(conn.line())
        except OSError:
            reply.append(b"")
        answered.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    chunk = pattern * max(1, CHUNK // len(pattern))
    sent = 0
    try:
        while sent < total and not answered.is_set():
            conn.sock.sendall(chunk[: total - sent])
            sent += min(len(chunk), total - sent)
        if not answered.is_set():
            conn.sock.sendall(end)
    except OSError:  # the server closed the connection under us
        pass
    reader.join(timeout=conn.sock.gettimeout())
    if reader.is_alive():
        return Flood(b"", sent, False)
    got = reply[0]
    return Flood(got, sent, got == b"" or conn.closed())
