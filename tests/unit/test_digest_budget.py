"""Never clipped: a digest's HTML stays under 100 KB whatever the preferences allow (Gmail
clips above 102 KB, hiding the unsubscribe link). Past the budget the remaining papers are
listed by title, then as "N more papers in your browser"; the unsubscribe and preference
links are always inside; the text part still carries every paper. Before the budget, a
100-paper digest was 166 KB with its unsubscribe link at byte 165,798."""

from __future__ import annotations

import email
import re
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default

from digestd.core.config import Settings
from digestd.core.models import Entry
from digestd.core.tokens import links, view_url, vote_macs
from digestd.mail.budget import HTML_BUDGET_BYTES
from digestd.mail.mime import SlotPart, build_digest_template, format_date, from_wire
from digestd.mail.render import Renderer, slot_values, vote_slots
from digestd.ranking.select import Pick, Profile

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
BASE = "https://papers-digest.example.org"
SETTINGS = Settings(from_address="Papers Digest <papers@example.org>", base_url=BASE)
SECRET = "budget-test-secret-0123456789"
WORDS = "Sparse Mixture Attention Retrieval Long-Context Interpretability Heads Scaling Laws"


def papers(n: int, title: str) -> list[Pick]:
    abstract = " ".join(f"Sentence {i} explains a long and detailed point, at length." * 3
                        for i in range(60))[:5000]  # fmt: skip
    return [
        Pick(
            Entry(
                id=1000 + i,
                canonical_key=f"arxiv:2611.{i:05d}",
                url=f"https://arxiv.org/abs/2611.{i:05d}",
                title=f"{i}: {title}"[:300],
                summary=abstract,
                authors=[f"Author Number {k}" for k in range(40)],
                categories=["cs.CL", "cs.LG", "cs.AI", "stat.ML", "cs.IR"],
                code_url=f"https://github.com/example-organization/project-{i}",
                upvotes=1000 + i,
                published_at=NOW,
                ingested_at=NOW,
            ),
            0.9,
            "matches: attention heads, KV cache, retrieval · 1000 upvotes",
        )
        for i in range(n)
    ]


def sent(picks: list[Pick]) -> EmailMessage:
    """The digest as one subscriber receives it (the send path: template, fill)."""
    renderer = Renderer(SETTINGS)
    profile = Profile("", (), len(picks), NOW - timedelta(days=1), NOW)
    body = renderer.render_digest(profile, picks, day=date(2026, 11, 26))
    template = build_digest_template(
        sender=SETTINGS.from_address,
        subject=body.subject,
        parts=[SlotPart(subtype, parts) for subtype, parts in body.slot_parts()],
    )
    unsubscribe, preferences, view, vote = links(
        BASE, SECRET, ("unsubscribe", "preferences", "view", "vote"), 987_654_321_012, 3
    )
    macs = vote_macs(SECRET, vote.rpartition("/")[2], body.entry_ids)
    data = template.fill(
        to_email="a.very.long.address.of.a.reader@subdomain.example-university.edu",
        to_name="",
        message_id="<digest.2026-11-26.987654321012.x@example.org>",
        unsubscribe_url=unsubscribe,
        date=format_date(NOW),
        values=slot_values(
            email="a.very.long.address.of.a.reader@subdomain.example-university.edu",
            unsubscribe_url=unsubscribe,
            preferences_url=preferences,
            view_url=view_url(view, "2026-11-26"),
            vote_url=vote,
            vote_macs=dict(zip(vote_slots(body.entry_ids), macs, strict=True)),
        ),
    )
    assert data is not None
    message = email.message_from_bytes(from_wire(data), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str, int]:
    """(text, HTML, size of the HTML part as sent: quoted-printable)."""
    text_part, html_part = message.iter_parts()
    raw = html_part.get_payload(decode=False)
    return text_part.get_content(), html_part.get_content(), len(raw.encode())


def test_a_100_paper_digest_stays_under_100_kb_with_its_links() -> None:
    picks = papers(100, f"{WORDS} " * 6)
    text, html, encoded = parts(sent(picks))
    size = len(html.encode())
    assert size < HTML_BUDGET_BYTES and encoded < HTML_BUDGET_BYTES, (size, encoded)
    # The footer's links are there, near the end (inside what Gmail shows).
    assert f"{BASE}/unsubscribe/" in html and f"{BASE}/preferences/" in html
    assert html.rindex(f"{BASE}/unsubscribe/") < HTML_BUDGET_BYTES
    # The first papers in full (with their vote links), the rest by title, none lost.
    full = html.count(">More like this</a>")
    listed = html.count("<li")
    assert 20 < full < 100 and full + listed == 100, (full, listed)
    for pick in picks:
        assert pick.entry.url in html
    # The text part carries every paper in full: title, link, vote links.
    for pick in picks:
        assert pick.entry.title[:60] in text and pick.entry.url in text
    assert text.count("More like this: ") == 100


def test_past_even_the_titles_the_rest_is_one_link_to_the_browser() -> None:
    # Titles that escape to five times their length (&amp;): 100 of them cannot all fit.
    picks = papers(100, "&" * 300)
    _, html, encoded = parts(sent(picks))
    assert len(html.encode()) < HTML_BUDGET_BYTES and encoded < HTML_BUDGET_BYTES
    more = re.search(r'<a href="([^"]+)"[^>]*>(\d+) more papers in your browser</a>', html)
    assert more is not None, html[-3000:]
    assert more.group(1).startswith(f"{BASE}/view/")
    shown = html.count(">More like this</a>") + html.count("<li")
    assert shown + int(more.group(2)) == 100
    assert f"{BASE}/unsubscribe/" in html and f"{BASE}/preferences/" in html


def test_a_usual_digest_is_rendered_whole() -> None:
    _, html, _ = parts(sent(papers(10, WORDS)))
    assert html.count(">More like this</a>") == 10 and "<li" not in html
    assert "in your browser" not in html
