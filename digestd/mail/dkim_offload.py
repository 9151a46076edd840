"""A send pass's DKIM private-key operations beside its event loop, in batches.

The event loop prepares each signature (`mime.Filled.unsigned`: the body hash and the
canonical header block, ≈0.07 ms) and hands only the RSA (and Ed25519) operations over,
≈0.27 ms a message. They run in a child process (`dkim_child`), which reads the keys from
their files itself; the loop writes a frame of requests to its pipe and reads a frame of
signatures back. Requests queue while a frame is being signed and go together in the next
one (one write and one read per frame, not per message), so the more the loop produces the
larger the frames.

A message waits for its signature before it is sent: never unsigned. The process starts
once a pass has `START_AT` messages to sign (a smaller pass signs in the loop), those
before it is ready are signed in the loop (nothing waits for it), and it ends with the
pass. If it cannot start, holds other
keys than the pass's, fails, dies or does not answer within `ANSWER_SECONDS`, one warning
line says so and the rest of the pass signs in the loop, as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import digestd
from digestd.mail.dkim import DkimSigner, Unsigned
from digestd.mail.dkim_child import FRAME, OK, REQUEST, SIGNATURE, fingerprint
from digestd.mail.mime import Filled

log = logging.getLogger(__name__)

# Starting the process costs ≈0.1 s of CPU (Python and OpenSSL loaded again), ≈300
# signatures' worth: a pass with fewer messages than this signs them all in the loop.
START_AT = 200
START_SECONDS = 30.0  # for the process to load its keys and say so
ANSWER_SECONDS = 30.0  # for one frame (≈0.3 ms a signature: a frame takes milliseconds)

_Waiting = tuple[Unsigned, "asyncio.Future[tuple[bytes, ...]]"]


class ChildFailed(Exception):
    """The signing process answered with a failure, or not as expected."""


class OffloadSigner:
    """Signs one pass's messages with `signer`'s keys, their private-key operations in a
    child process reading `key_files` (the same keys, in the same order)."""

    # Tests set it: the first signature starts the process and every one waits for it,
    # whatever the pass's size (else see `expect`).
    always_offload = False

    def __init__(self, signer: DkimSigner, key_files: Sequence[Path]) -> None:
        self.signer = signer
        self._key_files = tuple(str(p) for p in key_files)
        self._proc: asyncio.subprocess.Process | None = None  # in use
        self._child: asyncio.subprocess.Process | None = None  # started (ended by close)
        self._starting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queue: list[_Waiting] = []
        self._in_flight: list[_Waiting] = []
        self._expected = 0
        self.gone = False  # given up on the process: everything signed in the loop
        self.frames = 0  # frames answered by the process
        self.offloaded = 0  # messages signed by the process

    def expect(self, messages: int) -> None:
        """`messages` more are coming: the process is started (not waited for) once a pass
        has `START_AT` or more."""
        self._expected += messages
        if self._expected >= START_AT and self._starting is None and not self.gone:
            self._starting = asyncio.ensure_future(self._start())

    @property
    def started(self) -> bool:
        """Whether the process was started (it may have been given up since)."""
        return self._starting is not None

    async def signed(self, filled: Filled) -> bytes:
        """`filled.message` with its DKIM-Signature lines in front."""
        unsigned = filled.unsigned(self.signer)
        if self.always_offload and self._proc is None and not self.gone:
            await self.start()
        if self._proc is None:
            return self._here(unsigned) + filled.message
        future: asyncio.Future[tuple[bytes, ...]] = asyncio.get_running_loop().create_future()
        self._queue.append((unsigned, future))
        if not self._in_flight:
            self._send()
        return self.signer.complete(unsigned, await future) + filled.message

    async def start(self) -> bool:
        """Start the process (once) and wait until it is ready; False when it is not used."""
        if self._starting is None and not self.gone:
            self._starting = asyncio.ensure_future(self._start())
        if self._starting is not None:
            await asyncio.shield(self._starting)
        return self._proc is not None

    def _here(self, unsigned: Unsigned) -> bytes:
        return self.signer.complete(unsigned, self.signer.sign_all(unsigned))

    async def _start(self) -> None:
        env = dict(os.environ)
        # The child runs the code this process runs, installed or not.
        root = str(Path(digestd.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "digestd.mail.dkim_child",
                *self._key_files,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            self._child = proc
            assert proc.stdout is not None
            hello = await asyncio.wait_for(_read_frame(proc.stdout), START_SECONDS)
            if hello[:1] != OK:
                raise ChildFailed(hello[1:].decode("utf-8", "replace"))
            if hello[1:] != b"".join(fingerprint(k.private) for k in self.signer.keys):
                raise ChildFailed("its key files hold other keys than this pass signs with")
        except (OSError, EOFError, TimeoutError, ChildFailed, asyncio.IncompleteReadError) as exc:
            self._give_up(f"did not start ({_why(exc)})", proc)
            return
        except BaseException:  # cancelled (the pass ended first): no process left behind
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            raise
        self._proc = proc
        self._reader = asyncio.ensure_future(self._read(proc))

    def _send(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        batch, self._queue = self._queue, []
        self._in_flight = batch
        payload = b"".join(
            REQUEST.pack(i, len(data)) + data
            for unsigned, _ in batch
            for i, data in enumerate(unsigned.data)
        )
        proc.stdin.write(FRAME.pack(len(payload)) + payload)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(ANSWER_SECONDS, self._no_answer, proc)

    def _no_answer(self, proc: asyncio.subprocess.Process) -> None:
        if self._proc is proc:
            self._give_up(f"did not answer within {ANSWER_SECONDS:.0f} s", proc)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                answer = await _read_frame(proc.stdout)
                if self._timer is not None:
                    self._timer.cancel()
                if answer[:1] != OK:
                    raise ChildFailed(answer[1:].decode("utf-8", "replace"))
                signatures = _signatures(answer)
                batch, self._in_flight = self._in_flight, []
                if len(signatures) != sum(len(u.data) for u, _ in batch):
                    raise ChildFailed("it answered with the wrong number of signatures")
                at = 0
                for unsigned, future in batch:
                    n = len(unsigned.data)
                    if not future.done():  # its sender may have been cancelled
                        future.set_result(tuple(signatures[at : at + n]))
                    at += n
                self.frames += 1
                self.offloaded += len(batch)
                if self._queue:
                    self._send()
        except (OSError, EOFError, ChildFailed, asyncio.IncompleteReadError) as exc:
            if self._proc is proc:
                code = proc.returncode
                self._give_up(_why(exc) if code is None else f"exited with code {code}", proc)

    def _give_up(self, why: str, proc: asyncio.subprocess.Process | None) -> None:
        """One warning line; from now on sign in the loop, starting with what was waiting."""
        log.warning("DKIM signing process %s: signing in this process instead", why)
        self.gone = True
        self._proc = None
        if self._timer is not None:
            self._timer.cancel()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        waiting, self._in_flight, self._queue = self._in_flight + self._queue, [], []
        for unsigned, future in waiting:
            if future.done():
                continue
            try:
                future.set_result(self.signer.sign_all(unsigned))
            except Exception as exc:  # the key itself fails: the send fails as it would here
                future.set_exception(exc)

    async def close(self) -> None:
        """End the process (it exits when its input ends) and wait for it."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        self._proc = None
        if self._timer is not None:
            self._timer.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        proc, self._child = self._child, None
        if proc is None and not self.gone:
            return
        log.info(
            "DKIM: %d messages signed by the signing process in %d frames",
            self.offloaded,
            self.frames,
        )
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _read_frame(stream: asyncio.StreamReader) -> bytes:
    (size,) = FRAME.unpack(await stream.readexactly(FRAME.size))
    return await stream.readexactly(size)


def _signatures(answer: bytes) -> list[bytes]:
    out = []
    at = 1
    while at < len(answer):
        (size,) = SIGNATURE.unpack_from(answer, at)
        at += SIGNATURE.size
        out.append(answer[at : at + size])
        at += size
    return out


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError | EOFError):
        return "ended"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__


def offload_for(
    signer: DkimSigner | None, key_files: Sequence[Path | None]
) -> OffloadSigner | None:
    """An `OffloadSigner` when signing is on (`signer`), else None."""
    if signer is None:
        return None
    files = [p for p in key_files if p is not None]
    return OffloadSigner(signer, files) if len(files) == len(signer.keys) else None
