"""Digest rendering: snapshots, hostile feed content, size, template overrides, text part.

Snapshots live in tests/fixtures/render/; regenerate them after an intended template change
with `DIGESTD_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_render_digest.py` and
review the diff.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digestd.core.config import Settings
from digestd.core.models import Entry
from digestd.mail.render import GMAIL_CLIP_BYTES, Renderer, TemplateProblem
from digestd.ranking.select import Pick, Profile

SNAPSHOTS = Path(__file__).resolve().parents[1] / "fixtures" / "render"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
PROFILE = Profile("attention heads", (), 10, NOW - timedelta(days=1), NOW)
SETTINGS = Settings(from_address="Papers Digest <papers@example.org>")
LINKS = dict(
    email="ada@example.org",
    unsubscribe_url="https://digest.example.org/unsubscribe/UNSUB.TOKEN",
    preferences_url="https://digest.example.org/preferences/PREFS.TOKEN",
    view_url="https://digest.example.org/view/VIEW.TOKEN/2026-11-26",
    vote_url="https://digest.example.org/vote/VOTE.TOKEN",
    vote_macs=[f"mac{i:013d}" for i in range(20)],
)


def entry(n: int, **kw: object) -> Entry:
    base: dict[str, object] = dict(
        id=n,
        canonical_key=f"arxiv:2611.{n:05d}",
        url=f"https://arxiv.org/abs/2611.{n:05d}",
        title=f"Paper number {n}",
        summary="We study a thing. It works well. We release code. Nothing else to add.",
        authors=["Ada Lovelace", "Alan Turing"],
        categories=["cs.CL"],
        published_at=NOW,
        ingested_at=NOW,
        upvotes=0,
    )
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def sample_picks() -> list[Pick]:
    return [
        Pick(
            entry(
                1,
                title="Successor Heads: Recurring, Interpretable Attention Heads In The Wild",
                authors=["Rhys Gould", "Euan Ong", "George Ogden", "Arthur Conmy"],
                categories=["cs.LG", "cs.AI"],
                summary=(
                    "In this work we present successor heads: attention heads that increment "
                    "tokens with a natural ordering, such as numbers, months, and days. For "
                    "example, successor heads increment 'Monday' into 'Tuesday'. We explain the "
                    "successor head behavior with an approach rooted in mechanistic "
                    "interpretability. Further sentences are not part of the excerpt."
                ),
                upvotes=120,
                code_url="https://github.com/example/successor-heads",
            ),
            0.9123,
            "matches: attention heads · 120 upvotes",
        ),
        Pick(
            entry(2, title="Étude des têtes d'attention — naïve but useful", upvotes=3),
            0.5,
            "matches: attention heads · 3 upvotes",
        ),
        Pick(entry(3, url="", authors=[], categories=[]), 0.4, "matches: attention heads"),
    ]


def render(fmt: str = "html", picks: list[Pick] | None = None, settings: Settings = SETTINGS):
    r = Renderer(settings)
    body = r.render_digest(
        PROFILE, sample_picks() if picks is None else picks, day=NOW.date(), fmt=fmt
    )
    return body, r.personalize(body, **LINKS)


def check_snapshot(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("DIGESTD_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes") and not path.exists():
            pytest.fail(f"snapshot {path} is missing")
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, regenerate with DIGESTD_UPDATE_SNAPSHOTS=1"
    )


def test_html_and_text_match_snapshots() -> None:
    _, mail = render()
    assert mail.html is not None
    check_snapshot("digest.html", mail.html)
    check_snapshot("digest.txt", mail.text)
    assert mail.subject == "Successor Heads, and 2 more papers · Thu 26 Nov"


def test_html_is_email_safe_and_complete() -> None:
    _, mail = render()
    html = mail.html or ""
    # css-inline moved the rules into attributes; only @media rules remain in <style>
    style_blocks = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert style_blocks and all(b.strip().startswith("@media") for b in style_blocks)
    assert 'style="' in html and "max-width: 600px" in html
    # nothing external: no images, fonts or stylesheets to fetch
    assert not re.search(r"<img|<link|@import|url\(|@font-face", html, re.I)
    assert "Rhys Gould, Euan Ong, George Ogden et al." in html
    assert "cs.LG, cs.AI" in html
    assert 'href="https://github.com/example/successor-heads"' in html
    assert "Further sentences" not in html  # a 2–3 sentence excerpt, not the abstract
    assert "Thu 26 Nov 2026" in html and "3 papers picked for you" in html
    assert "Manage preferences" in html and "Unsubscribe" in html
    assert "Papers Digest &lt;papers@example.org&gt;" in html
    assert "matches: attention heads · 120 upvotes" in html


def test_text_part_carries_every_title_and_link() -> None:
    _, mail = render("text")
    assert mail.html is None
    for pick in sample_picks():
        assert pick.entry.title in mail.text
        if pick.entry.url:
            assert pick.entry.url in mail.text
    assert "Code: https://github.com/example/successor-heads" in mail.text
    assert "Unsubscribe: https://digest.example.org/unsubscribe/UNSUB.TOKEN" in mail.text
    assert "Manage preferences: https://digest.example.org/preferences/PREFS.TOKEN" in mail.text


def test_hostile_feed_content_is_escaped_and_cannot_forge_placeholders() -> None:
    # Placeholder look-alikes: the real format with a guessed marker, and the slot names.
    lookalike = "--0123456789abcdef-unsubscribe_url-- {{ unsubscribe_url }} {email}"
    evil = entry(
        66,
        title=f'<script>alert("x")</script> {{{{ 7*7 }}}} {{% if 1 %}}yes{{% endif %}} {lookalike}',
        summary=f"<img src=x onerror=alert(1)> {lookalike}. Second.",
        authors=['"><b>Mallory</b>'],
        categories=["cs.CR<style>"],
        url="javascript:alert(1)",
        code_url="data:text/html,<script>alert(1)</script>",
    )
    body, mail = render(picks=[Pick(evil, 1.0, "matches: <b>x</b>")])
    html = mail.html or ""
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;" in html
    assert "{{ 7*7 }}" in html and "{% if 1 %}yes{% endif %}" in html  # shown, not evaluated
    assert "javascript:" not in html and "data:text" not in html.replace("data:text/html,&lt;", "")
    assert 'href="javascript' not in html and 'href="data:' not in html
    # look-alikes come through untouched; only the real slots got the subscriber's links
    assert lookalike in mail.text
    assert lookalike in html
    assert html.count("https://digest.example.org/unsubscribe/UNSUB.TOKEN") == 1
    assert mail.text.count("https://digest.example.org/unsubscribe/UNSUB.TOKEN") == 1
    assert body.marker not in lookalike


def test_full_digest_stays_well_under_gmail_clipping() -> None:
    long_abstract = " ".join(
        f"Sentence {i} explains a rather long and detailed point about the method."
        for i in range(40)
    )
    picks = [
        Pick(
            entry(
                i,
                title="A Very Long Title About Attention Heads, Caches and Retrieval " * 3,
                summary=long_abstract,
                authors=[f"Author Number {k}" for k in range(40)],
                categories=["cs.CL", "cs.LG", "cs.AI", "stat.ML", "cs.IR"],
                upvotes=1000 + i,
                code_url=f"https://github.com/example/project-{i}",
            ),
            0.9,
            "matches: attention heads, KV cache, retrieval · 1000 upvotes",
        )
        for i in range(25)
    ]
    _, mail = render(picks=picks)
    size = len((mail.html or "").encode()) + len(mail.text.encode())
    assert size < 0.75 * GMAIL_CLIP_BYTES, f"{size} bytes"


def test_templates_dir_overrides_one_template_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt").write_text(
        "CUSTOM {{ papers|length }}: {% for p in papers %}{{ p.title }};{% endfor %} "
        "{{ unsubscribe_url }}\n",
        encoding="utf-8",
    )
    settings = Settings(from_address="Papers <papers@example.org>", templates_dir=tmp_path)
    _, mail = render(settings=settings)
    assert mail.text.startswith("CUSTOM 3: Successor Heads")
    assert mail.text.rstrip().endswith("https://digest.example.org/unsubscribe/UNSUB.TOKEN")
    assert "picked for you" in (mail.html or "")  # digest.html still the shipped one


def test_an_override_reads_paper_fields_as_keys_or_attributes_and_a_typo_names_its_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "email").mkdir()
    text = tmp_path / "email" / "digest.txt"
    text.write_text(
        "{% for p in papers %}{{ p.title }}|{{ p['title'] }}|{{ p.get('url') }};{% endfor %}\n",
        encoding="utf-8",
    )
    settings = Settings(from_address="Papers <papers@example.org>", templates_dir=tmp_path)
    _, mail = render(settings=settings)
    first = mail.text.split(";")[0].split("|")
    assert first[0] == first[1] and first[0].startswith("Successor Heads")
    assert first[2].startswith("https://")
    text.write_text("{% for p in papers %}\n{{ p.titel }}{% endfor %}\n", encoding="utf-8")
    with pytest.raises(TemplateProblem, match=r"digest\.txt line 2: .*titel"):
        render(settings=settings)
