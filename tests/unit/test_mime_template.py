"""The fast path (MIME built once per digest, slots filled per subscriber) writes messages
that read exactly like the reference `build_digest_message`: same headers, same decoded
parts, for ordinary and hostile subscribers and feed content."""

from __future__ import annotations

import binascii
import random
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from digestd.core.config import Settings
from digestd.core.models import Entry
from digestd.mail import mime
from digestd.mail.mime import (
    SlotPart,
    _encoded_body,
    build_digest_message,
    build_digest_template,
    format_date,
    from_wire,
)
from digestd.mail.render import DigestBody, Renderer, slot_values, vote_slots
from digestd.ranking.select import Pick, Profile

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SENDER = "Papers Digest <papers@example.org>"
SETTINGS = Settings(from_address=SENDER)
PROFILE = Profile("attention", (), 10, NOW - timedelta(days=1), NOW)
LONG_BASE = "https://digest.example.org/" + "a-very-long-path-segment/" * 6


def picks(hostile: str) -> list[Pick]:
    def entry(n: int, **kw: object) -> Entry:
        base: dict[str, object] = dict(
            id=n,
            canonical_key=f"arxiv:2611.{n:05d}",
            url=f"https://arxiv.org/abs/2611.{n:05d}?a=1&b=2",
            title=f"Paper {n}",
            summary="We study a thing. It works well.",
            authors=["Ada Lovelace"],
            categories=["cs.CL"],
            published_at=NOW,
            ingested_at=NOW,
            upvotes=n,
        )
        base.update(kw)
        return Entry(**base)  # type: ignore[arg-type]

    return [
        Pick(entry(1, title="Attention — naïve, ünïcødé ≠ ASCII", summary=hostile), 0.9, "r"),
        Pick(entry(2, title=hostile, summary="x " * 400 + "=\n. \nFrom me"), 0.5, hostile),
    ]


# Feed text that looks like our placeholders, sentinels, QP and MIME syntax.
HOSTILE = (
    "--0123456789abcdef-email-- --deadbeef-unsubscribe_url-- {{ email }} "
    "digestd0123456789abcdef0123456789abcdef =3D =\r\n--===============123== "
    "Bcc: victim@example.org\r\nX-Evil: 1 " + "long" * 60
)

SUBSCRIBERS = [
    # (email, name, unsubscribe base) — plain, injected line breaks, non-ASCII, quoting,
    # a name too long for one line, a long non-ASCII name, long URLs.
    ("ada@example.org", "", "https://digest.example.org"),
    ("bob@example.org", "Bob", "https://digest.example.org"),
    ("mal@example.org", "Mallory\r\nCc: other@example.org\nBcc: x@example.org", LONG_BASE),
    ("zoe@example.org", "Zoë Ångström", "https://digest.example.org"),
    ("ada2@example.org", 'Ada "Interp", PhD; <x@y>', LONG_BASE),
    ("long@example.org", "Lovelace " * 12, "https://digest.example.org"),
    ("longu@example.org", "Ünïcødé Ñame " * 8, LONG_BASE),
]


MACS = [f"{i:016x}" for i in range(200)]


def reference(body: DigestBody, email: str, name: str, base: str, mid: str) -> EmailMessage:
    r = Renderer(SETTINGS)
    unsub, prefs = f"{base}/unsubscribe/TOKEN-{email}", f"{base}/preferences/P=1&q={email}"
    view = f"{base}/view/V-{email}/2026-11-26"
    personal = r.personalize(
        body,
        email=email,
        unsubscribe_url=unsub,
        preferences_url=prefs,
        view_url=view,
        vote_url=f"{base}/vote/V-{email}",
        vote_macs=MACS,
    )
    raw = build_digest_message(
        sender=SENDER,
        to_email=email,
        to_name=name,
        subject=personal.subject,
        text=personal.text,
        html=personal.html,
        message_id=mid,
        unsubscribe_url=unsub,
        when=NOW,
    ).as_bytes(policy=policy.SMTP)
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def fast(body: DigestBody, email: str, name: str, base: str, mid: str) -> bytes | None:
    unsub, prefs = f"{base}/unsubscribe/TOKEN-{email}", f"{base}/preferences/P=1&q={email}"
    view = f"{base}/view/V-{email}/2026-11-26"
    template = build_digest_template(
        sender=SENDER,
        subject=body.subject,
        parts=[SlotPart(st, parts) for st, parts in body.slot_parts()],
    )
    wire = template.fill(
        to_email=email,
        to_name=name,
        message_id=mid,
        unsubscribe_url=unsub,
        date=format_date(NOW),
        values=slot_values(
            email=email,
            unsubscribe_url=unsub,
            preferences_url=prefs,
            view_url=view,
            vote_url=f"{base}/vote/V-{email}",
            vote_macs=dict(zip(vote_slots(body.entry_ids), MACS, strict=False)),
        ),
    )
    if wire is None:
        return None
    # Wire form: CRLF line ends only, no line starting with a single "." (RFC 5321 4.5.2).
    assert wire.count(b"\n") == wire.count(b"\r\n") == wire.count(b"\r")
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in wire.split(b"\r\n"))
    return from_wire(wire)


def headers(msg: EmailMessage) -> list[tuple[str, str]]:
    return sorted((k.lower(), str(v)) for k, v in msg.items() if k.lower() != "content-type")


def parts(msg: EmailMessage) -> list[tuple[str, object]]:
    return [
        (p.get_content_type(), p.get_content() if not p.is_multipart() else None)
        for p in msg.walk()
    ]


@pytest.mark.parametrize("fmt", ["html", "text"])
def test_fast_path_reads_like_the_reference_for_every_kind_of_subscriber(fmt: str) -> None:
    body = Renderer(SETTINGS).render_digest(PROFILE, picks(HOSTILE), day=NOW.date(), fmt=fmt)
    for i, (email, name, base) in enumerate(SUBSCRIBERS):
        mid = f"<digest.2026-11-26.{i}.abc{i}@example.org>"
        raw = fast(body, email, name, base, mid)
        assert raw is not None
        got = message_from_bytes(raw, policy=policy.default)
        want = reference(body, email, name, base, mid)
        assert headers(got) == headers(want), name  # type: ignore[arg-type]
        assert got.get_content_type() == want.get_content_type()
        assert parts(got) == parts(want), name  # type: ignore[arg-type]
        # The personal values really are in there (not only equal to a broken reference).
        assert email in got.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"TOKEN-{email}" in got.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # Wire hygiene: 7-bit, CRLF only, QP lines within 76, no injected header.
        assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert all(len(line) <= 76 for line in payload.split(b"\r\n")), name
        assert all(len(line) <= 998 for line in head.split(b"\r\n"))
        assert got["Cc"] is None and got["Bcc"] is None and got["X-Evil"] is None
        for evil in (b"\r\nCc:", b"\r\nBcc:", b"\r\nX-Evil:"):
            assert evil not in head
        assert [a.addr_spec for a in got["To"].addresses] == [email]
        assert got["List-Unsubscribe"].startswith(f"<{base}/unsubscribe/TOKEN-{email}>")


def test_a_placeholder_in_feed_text_stays_text() -> None:
    body = Renderer(SETTINGS).render_digest(PROFILE, picks(HOSTILE), day=NOW.date(), fmt="html")
    raw = fast(body, "ada@example.org", "", "https://d.example.org", "<m.1@example.org>")
    assert raw is not None
    msg = message_from_bytes(raw, policy=policy.default)
    for subtype in ("plain", "html"):
        content = msg.get_body((subtype,)).get_content()  # type: ignore[union-attr]
        assert "--0123456789abcdef-email--" in content
        assert "digestd0123456789abcdef0123456789abcdef" in content


def test_a_non_ascii_address_is_left_to_the_reference_path() -> None:
    body = Renderer(SETTINGS).render_digest(PROFILE, picks("ok"), day=NOW.date(), fmt="text")
    assert fast(body, "zoë@example.org", "", "https://d.example.org", "<m.1@x.org>") is None


def _encoded_run_by_run(part: SlotPart) -> bytes:
    """The template body as it was built before the single pass: each literal run
    quoted-printable-encoded on its own (binascii), dot-stuffed, "%" doubled."""
    literals = [p.replace("\r\n", "\n").replace("\r", "\n") for p in part.parts[0::2]]
    if not literals[-1].endswith("\n"):
        literals[-1] += "\n"
    out = []
    for text in literals:
        qp = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
        out.append(re.sub(rb"(?m)^\.", b"..", qp).replace(b"%", b"%%"))
    return b"%s".join(out)


def test_one_encoding_pass_gives_the_bytes_of_encoding_each_run_alone() -> None:
    # What the encoder treats specially at a line's end or a run's edge: trailing blanks,
    # a lone ".", "=", "%", CR/LF mixes, non-ASCII, lines long enough for soft breaks, and
    # text that looks like the sentinel.
    rng = random.Random(20261130)
    alphabet = [" ", "\t", "\n", "\r", ".", "=", "%", "é", "€", "a", "x" * 80, "digestd", "-"]
    for _ in range(3000):
        runs = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(1, 6))
        ]
        parts: list[str] = []
        for i, run in enumerate(runs):
            parts += [run] if i == 0 else [f"slot{i}", run]
        encoded, names = _encoded_body(SlotPart("html", parts))
        assert encoded == _encoded_run_by_run(SlotPart("html", parts)), parts
        assert names == tuple(parts[1::2])


@pytest.mark.parametrize(
    ("url", "mailto", "listed"),
    [
        ("https://d.example/u/T1", "", "<https://d.example/u/T1>"),
        (
            "https://d.example/u/T1",
            "mailto:b+u1-x@b.example?subject=unsubscribe",
            "<https://d.example/u/T1>,\r\n <mailto:b+u1-x@b.example?subject=unsubscribe>",
        ),
        # A ">" inside a URL: entries are cut only after a ">" that a "," follows.
        (
            "https://d.example/u/a>b,c",
            "mailto:x@b.example",
            "<https://d.example/u/a>b,c>,\r\n <mailto:x@b.example>",
        ),
        ("https://d.example/u/a>,b", "", "<https://d.example/u/a>,\r\n b>"),
    ],
)
def test_per_subscriber_header_lines(url: str, mailto: str, listed: str) -> None:
    mid = "<digest.1@example.org>"
    got = mime._header_lines("r@example.org", "", mid, url, mailto, "Thu, 26 Nov 2026 06:00:00 GMT")
    want = (
        "To: r@example.org\r\nDate: Thu, 26 Nov 2026 06:00:00 GMT\r\n"
        f"Message-ID: {mid}\r\nList-Unsubscribe: {listed}\r\n"
    )
    assert got == want.encode("ascii")
    named = mime._header_lines("r@example.org", "R. Ader", mid, url, mailto, "D")
    assert named == want.replace("r@example.org", '"R. Ader" <r@example.org>', 1).replace(
        "Thu, 26 Nov 2026 06:00:00 GMT", "D"
    ).encode("ascii")


SUBJECTS = [
    "Successor Heads, and 9 more papers · Sun 6 Dec",
    "",
    "100% sure: a .NET paper, and 2 more",
    "emoji 🚀 rocket, and 2 more papers · Tue 8 Dec",
    "=?utf-8?q?looks_encoded?= Subject: digestd-subject",
    "Long " + "Ünïcødé " * 30,
    "word " * 40,
    "tabs\tand\r\nbreaks  ",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_subject_line_is_the_email_packages_and_the_skeleton_is_shared(subject: str) -> None:
    parts = [SlotPart("plain", ["hello ", "email"]), SlotPart("html", ["<p>hello</p>"])]
    first = build_digest_template(sender=SENDER, subject="First", parts=parts)
    template = build_digest_template(sender=SENDER, subject=subject, parts=parts)
    msg = EmailMessage(policy=mime.DIGEST_POLICY)
    msg["Subject"] = mime.one_line(subject)
    wire = msg.as_bytes(policy=mime.DIGEST_POLICY.clone(linesep="\r\n"))
    line = wire.split(b"\r\n\r\n")[0].replace(b"%", b"%%") + b"\r\n"  # as a %-format
    head, first_head = (t.body.split(b"\r\n\r\n")[0] + b"\r\n" for t in (template, first))
    assert head.count(line) == 1
    # Everything else (the multipart boundary too) is the skeleton the first one was built on.
    assert head.replace(line, b"") == first_head.replace(b"Subject: First\r\n", b"")
