"""Normalizing untrusted items: canonical keys, versions, clean text, safe HTML, code links."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import SUMMARY_MAX, TITLE_MAX, Rejected, normalize
from digestd.ingest.types import RawItem

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)

HOSTILE_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>
<item>
  <title>&lt;script&gt;alert(1)&lt;/script&gt;Attention &lt;b&gt;heads&lt;/b&gt;&#13;&#10;Bcc:
  victim@example.com\xe2\x80\xa8X</title>
  <link>https://example.org/p/1</link>
  <guid>https://example.org/p/1</guid>
  <dc:creator>Mallory &lt;img src=x onerror=alert(1)&gt;</dc:creator>
  <description><![CDATA[<p onclick="steal()">Good <b>abstract</b>.</p>
    <img src="x" onerror="alert(1)"><script>document.cookie</script>
    <a href="javascript:alert(1)">click</a> <a href="data:text/html;base64,PHNjcmlwdD4=">data</a>
    <a href="https://github.com/acme/attn-heads">code</a>
    <iframe src="https://evil.example/"></iframe>
    <form action="https://evil.example/"><input name=p></form>
    <style>body{display:none}</style>]]></description>
</item></channel></rss>"""


def test_hostile_content_comes_out_clean() -> None:
    result = parse_document(HOSTILE_RSS, {"Content-Type": "application/rss+xml"})
    [entry] = [normalize(i, NOW) for i in result.items]
    assert entry.title == "Attention heads Bcc: victim@example.com X"  # one line, no markup
    assert entry.authors == ["Mallory"]
    html = entry.summary_html
    assert "<p>Good <b>abstract</b>.</p>" in html
    for bad in ("<script", "onerror", "onclick", "javascript:", "data:", "<iframe", "<form",
                "<input", "<style", "<img", "document.cookie", "display:none"):  # fmt: skip
        assert bad not in html, bad
        assert bad not in entry.summary, bad
    assert 'href="https://github.com/acme/attn-heads"' in html
    assert entry.summary.startswith("Good abstract.")
    assert entry.code_url == "https://github.com/acme/attn-heads"


@pytest.mark.parametrize(
    ("item", "key", "version"),
    [
        (RawItem(guid="oai:arXiv.org:2404.12345v2", title="t"), "arxiv:2404.12345", 2),
        (RawItem(guid="x", link="http://arxiv.org/abs/2404.12345v3", title="t"),
         "arxiv:2404.12345", 3),
        (RawItem(link="https://arxiv.org/pdf/2404.12345", title="t"), "arxiv:2404.12345", None),
        (RawItem(guid="http://arxiv.org/abs/hep-th/9901001v1", title="t"),
         "arxiv:hep-th/9901001", 1),
        (RawItem(link="https://huggingface.co/papers/2501.00001", title="t"),
         "arxiv:2501.00001", None),
        (RawItem(title="t", summary="arXiv:2401.00002v4 Announce Type: replace \nAbstract: x"),
         "arxiv:2401.00002", 4),
        (RawItem(title="t", doi="10.1093/Bioinformatics/btac431", link="https://j.example/a"),
         "doi:10.1093/bioinformatics/btac431", None),
        (RawItem(title="t", link="https://blog.example/post", guid="tag:blog,1"),
         "url:https://blog.example/post", None),
        (RawItem(title="t", guid="tag:blog.example,2026:1"), "guid:tag:blog.example,2026:1", None),
    ],
)  # fmt: skip
def test_canonical_key_precedence(item: RawItem, key: str, version: int | None) -> None:
    entry = normalize(item, NOW)
    assert (entry.canonical_key, entry.version) == (key, version)


def test_content_hash_key_is_stable_and_distinct() -> None:
    a1 = normalize(RawItem(title="Same", summary="text", summary_is_html=False), NOW)
    a2 = normalize(RawItem(title="Same", summary="text", summary_is_html=False), NOW)
    b = normalize(RawItem(title="Other", summary="text", summary_is_html=False), NOW)
    assert a1.canonical_key == a2.canonical_key != b.canonical_key
    assert a1.canonical_key.startswith("hash:")


def test_announce_prefix_is_stripped_and_plain_text_is_escaped() -> None:
    item = RawItem(
        title="t",
        summary="arXiv:2609.26811v1 Announce Type: new \nAbstract: We show a<b & c>d.",
        summary_is_html=False,
    )
    entry = normalize(item, NOW)
    assert entry.summary == "We show a<b & c>d."
    assert entry.summary_html == "<p>We show a&lt;b &amp; c&gt;d.</p>"


def test_dates_missing_or_in_the_future_become_ingestion_time() -> None:
    assert normalize(RawItem(title="t"), NOW).published_at == NOW
    future = RawItem(title="t", published=NOW + timedelta(days=30))
    assert normalize(future, NOW).published_at == NOW
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [
                {"id": "1", "title": "a", "date_published": "yesterday-ish"},
                {"id": "2", "title": "b", "date_published": "2026-11-20T10:00:00+02:00"},
            ],
        }
    ).encode()
    entries = [normalize(i, NOW) for i in parse_document(body, {}).items]
    assert [e.published_at for e in entries] == [NOW, datetime(2026, 11, 20, 8, tzinfo=UTC)]


def test_code_links_named_in_the_abstract() -> None:
    text = "See https://huggingface.co/papers/2501.1 and code at https://github.com/a-b/c.d)."
    entry = normalize(RawItem(title="t", summary=text, summary_is_html=False), NOW)
    assert entry.code_url == "https://github.com/a-b/c.d"
    entry = normalize(RawItem(title="t", summary="weights: https://huggingface.co/org/model"), NOW)
    assert entry.code_url == "https://huggingface.co/org/model"
    assert normalize(RawItem(title="t", summary="no link"), NOW).code_url is None


def test_item_without_title_or_text_is_rejected_with_a_reason() -> None:
    with pytest.raises(Rejected, match="neither a title nor any text"):
        normalize(RawItem(link="https://example.org/x"), NOW)


def test_unsafe_links_are_not_used_as_entry_urls() -> None:
    entry = normalize(RawItem(title="t", link="javascript:alert(1)", guid="g1"), NOW)
    assert entry.url == "" and entry.canonical_key == "guid:g1"


@pytest.mark.parametrize(
    ("body", "kind", "error"),
    [
        (b"<rss version='2.0'><channel><title>x</title></channel></rss>", "jsonfeed",
         "not valid JSON"),
        (b'{"hello": "world"}', "auto", "JSON document is not a JSON Feed or a Hugging Face"),
        (b'[{"paper": {"id": "2501.00001"}, "title": "t"}]', "jsonfeed", "is not a JSON Feed"),
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "auto", "not a recognized"),
        (b"", "auto", "empty document"),
        (b"<html><body>Moved</body></html>", "auto", "not a recognized"),
    ],
)  # fmt: skip
def test_documents_of_the_wrong_kind_are_rejected(body: bytes, kind: str, error: str) -> None:
    result = parse_document(body, {}, kind)
    assert result.error is not None and error in result.error
    assert not result.items


def test_kind_override_and_detection_agree_on_hf_arrays() -> None:
    body = b'[{"paper": {"id": "2501.00001", "upvotes": 7}, "title": "T", "numComments": 1}, 5]'
    for kind in ("auto", "hf_daily"):
        result = parse_document(body, {}, kind)
        assert result.kind == "hf_daily"
        assert [i.upvotes for i in result.items] == [7]
        assert result.rejected == ["item 2: not a JSON object"]


def test_huge_titles_and_summaries_are_cut_on_a_word_with_an_ellipsis() -> None:
    # Two 4 MB titles once made the home page 8 MB: every paper's text is bounded at ingest.
    text = "Long abstract sentence. " * 200_000
    item = RawItem(
        guid="g",
        link="https://example.org/p/huge",
        title="Attention " * 400_000,
        summary=f"<p>{text}</p>",
    )
    entry = normalize(item, NOW)
    assert len(entry.title) <= TITLE_MAX and entry.title.endswith("Attention…")
    assert len(entry.summary) <= SUMMARY_MAX and entry.summary.endswith("…")
    assert text.startswith(entry.summary.removesuffix("…") + " ")  # cut after a whole word
    assert entry.summary_html == f"<p>{entry.summary}</p>"


def test_a_title_without_spaces_is_cut_at_the_limit() -> None:
    entry = normalize(RawItem(guid="g", link="https://e.org/1", title="x" * 5000), NOW)
    assert entry.title == "x" * (TITLE_MAX - 1) + "…"


def test_titles_and_summaries_within_the_limits_are_kept_whole() -> None:
    title = "A" * TITLE_MAX
    summary = "word " * (SUMMARY_MAX // 5)
    entry = normalize(RawItem(guid="g", title=title, summary=summary, summary_is_html=False), NOW)
    assert entry.title == title and entry.summary == summary.strip()
