"""DKIM's private-key operations in the signing process (`mail.dkim_offload`, a real child
process): its signatures are byte for byte those signed in this process (RSA PKCS#1 v1.5
and Ed25519 are deterministic), batched; a process that dies, holds other keys, cannot read
its key or stops answering is given up with one warning line, and what was waiting is
signed here: a message is never handed back unsigned."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from digestd.mail.dkim import DkimKey, DkimSigner
from digestd.mail.dkim_offload import START_AT, OffloadSigner, offload_for
from digestd.mail.mime import Filled, SlotPart, build_digest_template
from tests.support.dkim import write_key

WHEN = 1_795_000_000.0


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("offload")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        write_key(folder / "s1.private", rsa_key),
        write_key(folder / "s1-ed.private", ed25519.Ed25519PrivateKey.generate()),
    )


def signer_of(files: list[Path]) -> DkimSigner:
    from digestd.mail.dkim import load_private_key

    keys = [DkimKey(f"s{i}", load_private_key(p)) for i, p in enumerate(files)]
    return DkimSigner("example.net", keys, clock=lambda: WHEN)


def messages(n: int) -> list[Filled]:
    template = build_digest_template(
        sender="Digest <d@example.net>",
        subject="Papers",
        parts=[SlotPart("plain", ["Hello ", "who", "\n\nBye  \n\n"])],
    )
    out = []
    for i in range(n):
        filled = template.filled(
            f"r{i}@example.org",
            f"Reader {i}",
            f"<{i}@example.net>",
            f"https://example.net/u/{i}",
            "Thu, 26 Nov 2026 08:30:00 +0000",
            {"plain": {"who": f"reader {i}"}},
        )
        assert filled is not None
        out.append(filled)
    return out


def ours(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """What this module logged at `level` (asyncio's own child-watcher lines left out)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "digestd.mail.dkim_offload" and r.levelno == level
    ]


@pytest.mark.parametrize("both", [False, True], ids=["rsa", "rsa+ed25519"])
async def test_the_process_signs_what_this_process_would_in_batches(
    key_files: tuple[Path, Path], both: bool
) -> None:
    files = list(key_files if both else key_files[:1])
    signer = signer_of(files)
    offload = offload_for(signer, [*files, None])
    assert offload is not None
    try:
        assert await offload.start()
        filled = messages(40)
        got = await asyncio.gather(*(offload.signed(f) for f in filled))
    finally:
        await offload.close()
    assert got == [f.signed(signer) for f in filled]
    assert got[0].count(b"DKIM-Signature:") == len(files)
    assert offload.offloaded == 40
    assert offload.frames < 40  # those that waited went together
    assert not offload.gone


async def test_a_process_that_dies_is_given_up_and_what_waited_is_signed_here(
    key_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    signer = signer_of([key_files[0]])
    offload = OffloadSigner(signer, [key_files[0]])
    filled = messages(6)
    try:
        assert await offload.start()
        assert await offload.signed(filled[0]) == filled[0].signed(signer)
        assert offload._proc is not None
        offload._proc.kill()
        with caplog.at_level(logging.WARNING, "digestd.mail.dkim_offload"):
            got = await asyncio.gather(*(offload.signed(f) for f in filled[1:]))
            got.append(await offload.signed(filled[0]))  # after: signed here
    finally:
        await offload.close()
    assert got == [f.signed(signer) for f in [*filled[1:], filled[0]]]
    assert offload.gone
    (line,) = ours(caplog, logging.WARNING)
    assert line == (
        "DKIM signing process exited with code -9: signing in this process instead"
    ) or line.startswith("DKIM signing process ended")


async def test_a_process_that_stops_answering_is_given_up(
    key_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    signer = signer_of([key_files[0]])
    offload = OffloadSigner(signer, [key_files[0]])
    try:
        assert await offload.start()
        proc = offload._proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        waiting = [asyncio.ensure_future(offload.signed(f)) for f in messages(3)]
        await asyncio.sleep(0)  # queued and sent: no answer comes
        assert not any(w.done() for w in waiting)
        with caplog.at_level(logging.WARNING, "digestd.mail.dkim_offload"):
            offload._no_answer(proc)  # what the timer calls after ANSWER_SECONDS
            got = await asyncio.gather(*waiting)
    finally:
        await offload.close()
    assert got == [f.signed(signer) for f in messages(3)]
    assert ours(caplog, logging.WARNING) == [
        "DKIM signing process did not answer within 30 s: signing in this process instead"
    ]
    assert proc.returncode is not None  # killed


async def test_a_process_with_other_keys_or_none_is_not_used(
    key_files: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = write_key(tmp_path / "other.private", ed25519.Ed25519PrivateKey.generate())
    signer = signer_of([key_files[0]])
    filled = messages(2)
    with caplog.at_level(logging.WARNING, "digestd.mail.dkim_offload"):
        for files in ([other], [tmp_path / "missing.private"]):
            offload = OffloadSigner(signer, files)
            offload.always_offload = True
            try:
                got = [await offload.signed(f) for f in filled]
            finally:
                await offload.close()
            assert got == [f.signed(signer) for f in filled]
            assert offload.gone and offload.offloaded == 0
    first, second = ours(caplog, logging.WARNING)
    assert first == (
        "DKIM signing process did not start (its key files hold other keys than this pass"
        " signs with): signing in this process instead"
    )
    assert second.startswith("DKIM signing process did not start (")
    assert "missing.private: cannot read" in second


def test_no_process_without_signing_or_without_every_key_file(
    key_files: tuple[Path, Path],
) -> None:
    assert offload_for(None, [key_files[0]]) is None
    assert offload_for(signer_of(list(key_files)), [key_files[0], None]) is None


async def test_the_process_starts_only_for_a_pass_big_enough(key_files: tuple[Path, Path]) -> None:
    signer = signer_of([key_files[0]])
    offload = OffloadSigner(signer, [key_files[0]])
    filled = messages(2)
    try:
        offload.expect(START_AT - 1)
        assert await offload.signed(filled[0]) == filled[0].signed(signer)
        assert not offload.started
        offload.expect(1)
        assert offload.started
        assert await offload.start()  # waits for it
        assert await offload.signed(filled[1]) == filled[1].signed(signer)
    finally:
        await offload.close()
    assert offload.offloaded == 1
