"""A message's DATA as it arrives: transparency dots, the end marker, line and size bounds.

`DataStream.feed` takes whatever part of the message has arrived, writes the message's
lines to a `Spool` (memory up to SPOOL_IN_MEMORY, then a temporary file) and keeps
nothing itself but the unfinished last line, at most DATA_LINE_MAX octets: memory does
not grow with a line without end nor with a message past the size limit. No socket here,
so every case is a unit test (tests/unit/test_smtp_data.py).

- Only `<CRLF>.<CRLF>` ends the message: a dot line after a bare LF or a bare CR is data,
  as it is to every sender that did not stuff it (no SMTP smuggling); lines are counted
  by LF, so a message with bare LFs is not one long line.
- A line over DATA_LINE_MAX makes the message refused at its end (the rest is read and
  dropped as it comes); past `max_bytes` the stream says so at once.
"""

from __future__ import annotations

import enum
import tempfile
from typing import IO

# RFC 5321 4.5.3.1.6 allows 1000 octets for a line of text; returned messages quote lines
# that MTAs let through (1242 octets in GMX's bounces of our corpus), hence 8 KiB.
DATA_LINE_MAX = 8192
# A message larger than this waits for its processing in a temporary file, not in memory.
SPOOL_IN_MEMORY = 256 * 1024

CR, DOT = 0x0D, 0x2E


class Spool:
    """A message as it arrives: in memory up to SPOOL_IN_MEMORY, then in a temporary file."""

    def __init__(self) -> None:
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, data: memoryview) -> None:
        # A blocking write on the event loop, but into the page cache: microseconds.
        if self._file is None and len(self._memory) + len(data) > SPOOL_IN_MEMORY:
            self._file = tempfile.TemporaryFile(prefix="digestd-inbound-", buffering=0)  # noqa: SIM115 - closed by close(), the spool outlives this call
            self._file.write(self._memory)
            self._memory = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data
        self.size += len(data)

    def take(self) -> bytes:
        """The whole message as one bytes object, once (the spool is emptied): called in
        the worker thread that processes it, so the file is read off the event loop."""
        if self._file is None:
            data, self._memory = bytes(self._memory), bytearray()
            return data
        self._file.seek(0)
        data = self._file.read()  # unbuffered: one read into one object of the file's size
        self.close()
        return data

    def close(self) -> None:
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None


class Fed(enum.Enum):
    """Where a `DataStream` stands after `feed`."""

    MORE = "more"  # the end marker has not come yet
    DONE = "done"  # the message is complete in the spool
    TOO_LONG = "too long"  # complete, but a line was over DATA_LINE_MAX: refuse it
    TOO_BIG = "too big"  # past max_bytes: answer 552 now, without reading the rest


class DataStream:
    """One message's DATA, fed as it arrives (see the module)."""

    def __init__(self, spool: Spool, max_bytes: int) -> None:
        self.spool = spool
        self.max_bytes = max_bytes
        self.size = 0  # octets of the message so far, dropped ones included
        self._line_start = True  # the previous line ended with CRLF: a dot here is special
        self._skipping = False  # inside a line over DATA_LINE_MAX, dropped as it comes
        self._too_long = False

    def feed(self, buf: bytearray) -> tuple[Fed, int]:
        """Consume what `buf` holds (deleted from it, but an unfinished line) and say where
        the message stands, with the number of octets consumed."""
        pos = done = 0
        ended = False
        limit = self.max_bytes
        with memoryview(buf) as view:
            while (nl := buf.find(b"\n", pos)) >= 0:
                end = nl + 1
                n = end - pos
                crlf = nl > pos and buf[nl - 1] == CR
                if self._skipping:
                    self._skipping = False
                elif self._line_start and n == 3 and crlf and buf[pos] == DOT:
                    ended = True
                    break
                elif n > DATA_LINE_MAX:
                    self._too_long = True
                elif self._line_start and buf[pos] == DOT and not self._too_long:
                    self.spool.write(view[done:pos])  # the lines before, then this one
                    done = pos + 1  # without its transparency dot (RFC 5321 4.5.2)
                    n -= 1
                self.size += n
                self._line_start = crlf
                pos = end
                if self.size > limit:
                    break
            if not self._too_long and self.size <= limit:
                self.spool.write(view[done:pos])
        consumed = pos + 3 if ended else pos
        del buf[:consumed]
        if ended:
            return (Fed.TOO_LONG if self._too_long else Fed.DONE), consumed
        if self.size <= limit and (self._skipping or len(buf) > DATA_LINE_MAX):
            # A line without end past the bound: dropped as it comes (a CR is kept, in case
            # the LF that ends the line comes with the next read).
            self._skipping = self._too_long = True
            drop = len(buf) - (1 if buf.endswith(b"\r") else 0)
            self.size += drop
            consumed += drop
            del buf[:drop]
        return (Fed.TOO_BIG if self.size > limit else Fed.MORE), consumed
