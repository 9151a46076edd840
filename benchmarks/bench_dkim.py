"""DKIM signing cost per message, and digest sizes (prints figures; not a test).

    .venv/bin/python benchmarks/bench_dkim.py --messages 5000 --papers 10

Renders one real digest (the seed papers, the built-in templates, N papers), builds its
message template once (`mime.build_digest_template`, as `send_due` does), then fills it in
for M subscribers (distinct addresses and signed links) three times: unsigned, signed with
RSA-2048, signed with RSA-2048 and Ed25519. Prints the CPU per message of each and the
difference (the signing cost), and the size of the message and of its HTML part.
`--sizes` prints the HTML size of digests of 10, 60 and 100 papers instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digestd.core.config import Settings  # noqa: E402
from digestd.core.models import Entry  # noqa: E402
from digestd.mail.dkim import signer_for  # noqa: E402
from digestd.mail.dkim_keys import keygen  # noqa: E402
from digestd.mail.mime import SlotPart, build_digest_template, format_date  # noqa: E402
from digestd.mail.render import Renderer, slot_values, vote_slots  # noqa: E402
from digestd.ranking.select import Pick, Profile  # noqa: E402

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def entries(n: int) -> list[Entry]:
    """`n` papers made from the seed feed (recycled, each with its own id and title)."""
    items = json.loads((REPO / "seeds/trending-papers.json").read_text(encoding="utf-8"))["items"]
    out = []
    for i in range(n):
        item = items[i % len(items)]
        out.append(
            Entry(
                id=i + 1,
                canonical_key=f"bench:{i}",
                url=item["url"],
                title=f"{item['title']} ({i})",
                summary=item.get("content_text", ""),
                authors=[a["name"] for a in item.get("authors", [])],
                categories=list(item.get("tags", [])),
                upvotes=100 - i % 100,
                published_at=NOW,
                ingested_at=NOW,
            )
        )
    return out


def render(settings: Settings, papers: int):  # type: ignore[no-untyped-def]
    picks = [Pick(e, 1.0, "trending") for e in entries(papers)]
    profile = Profile("", (), papers, NOW - timedelta(days=1), NOW)
    return Renderer(settings).render_digest(profile, picks, day=date(2026, 11, 26), fmt="html")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--papers", type=int, default=10)
    parser.add_argument("--sizes", action="store_true", help="HTML sizes of 10/60/100 papers")
    args = parser.parse_args()
    base = Settings(
        database_url="sqlite://",
        base_url="https://digest.example.org",
        from_address="Paper Digest <digest@example.org>",
    )
    if args.sizes:
        import binascii

        for n in (10, 60, 100):
            body = render(base, n)
            html = body.html or ""
            qp = len(binascii.b2a_qp(html.encode(), istext=True))
            full, titles = (
                html.count('<p class="rank"') - ("More papers" in html),
                html.count("<li"),
            )
            at = html.find("Unsubscribe</a>")
            print(f"{n:>4} papers: HTML {len(html.encode()):>7,} bytes ({qp:,} quoted-printable), "
                  f"{full} in full, {titles} by title, {n - full - titles} more; text "
                  f"{len(body.text.encode()):>7,} bytes; unsubscribe link at {at:,}")  # fmt: skip
        return
    body = render(base, args.papers)
    template = build_digest_template(
        sender=base.from_address,
        subject=body.subject,
        parts=[SlotPart(subtype, parts) for subtype, parts in body.slot_parts()],
    )
    names = vote_slots(body.entry_ids)
    values = [
        slot_values(
            email=f"reader{i}@example.net",
            unsubscribe_url=f"https://digest.example.org/unsubscribe/{i:032x}",
            preferences_url=f"https://digest.example.org/preferences/{i:032x}",
            view_url=f"https://digest.example.org/view/{i:032x}/2026-11-26",
            vote_url=f"https://digest.example.org/vote/{i:024x}",
            vote_macs={name: f"{i * 7 + k:016x}" for k, name in enumerate(names)},
        )
        for i in range(args.messages)
    ]
    date_value = format_date(NOW)
    with tempfile.TemporaryDirectory() as tmp:
        keys = keygen(Path(tmp), "bench", "example.org", ed25519_key=True)
        signers = {
            "unsigned": None,
            "rsa": signer_for(
                Settings(
                    **{**base.__dict__, "dkim_key_file": keys[0].path, "dkim_selector": "bench"}
                )
            ),
            "rsa+ed25519": signer_for(
                Settings(
                    **{
                        **base.__dict__,
                        "dkim_key_file": keys[0].path,
                        "dkim_selector": "bench",
                        "dkim_ed25519_key_file": keys[1].path,
                    }
                )
            ),
        }
        cpu: dict[str, float] = {}
        size = 0
        for label, signer in signers.items():
            started = time.process_time()
            for i, v in enumerate(values):
                data = template.fill(
                    to_email=f"reader{i}@example.net",
                    to_name="",
                    message_id=f"<digest.2026-11-26.{i}.x@example.org>",
                    unsubscribe_url=f"https://digest.example.org/unsubscribe/{i:032x}",
                    date=date_value,
                    values=v,
                    signer=signer,
                )
                assert data is not None
                size = len(data)
            cpu[label] = (time.process_time() - started) * 1000 / args.messages
    html_size = len((body.html or "").encode())
    print(f"{args.papers} papers, message {size:,} bytes, HTML part {html_size:,} bytes")
    for label, ms in cpu.items():
        extra = f"  (signing: {ms - cpu['unsigned']:.3f} ms)" if label != "unsigned" else ""
        print(f"{label:>12}: {ms:.3f} ms CPU a message to fill in{extra}")


if __name__ == "__main__":
    main()
