"""Every real-world fixture either parses into clean entries or is rejected with a reason.

Parsing and normalizing only (no database); storage is covered in tests/integration.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digestd.ingest.detect import parse_document
from digestd.ingest.normalize import Rejected, normalize
from digestd.ingest.types import NormalizedEntry, ParseResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
FILES = sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "README.md")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
_HEADER = re.compile(rb"^Header:\s*([\w-]+):\s*(.*?)\s*$", re.MULTILINE)


def headers_of(body: bytes) -> dict[str, str]:
    """The HTTP headers a feedparser-corpus file asks its server to send (`Header:` lines)."""
    return {m.group(1).decode(): m.group(2).decode() for m in _HEADER.finditer(body[:2000])}


def ingest(rel: str) -> tuple[ParseResult, list[NormalizedEntry], list[str]]:
    body = (FIXTURES / rel).read_bytes()
    result = parse_document(body, headers_of(body))
    entries, rejected = [], list(result.rejected)
    for item in result.items:
        try:
            entries.append(normalize(item, NOW))
        except Rejected as exc:
            rejected.append(str(exc))
    return result, entries, rejected


def by_key(entries: list[NormalizedEntry]) -> dict[str, NormalizedEntry]:
    return {e.canonical_key: e for e in entries}


def assert_clean(entry: NormalizedEntry) -> None:
    assert entry.title and entry.title == entry.title.strip()
    assert not re.search(r"[\r\n\x00-\x1f\u2028\u2029]", entry.title)
    for author in entry.authors:
        assert author and "<" not in author and "\n" not in author
    html = entry.summary_html.lower()
    assert "<script" not in html and "<iframe" not in html and "<form" not in html
    assert not re.search(r"<[^>]+\son\w+\s*=", html)
    assert "javascript:" not in html and 'href="data:' not in html
    assert "<" not in entry.summary or "<" in entry.summary_html or "&lt;" in entry.summary_html
    assert not entry.summary.startswith("arXiv:")
    assert entry.published_at.tzinfo is not None and entry.published_at <= NOW
    assert entry.canonical_key.split(":", 1)[0].split("#")[0] in (
        "arxiv", "doi", "url", "guid", "hash"
    )  # fmt: skip
    assert len(entry.canonical_key) <= 512


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_ingests_cleanly_or_is_rejected_with_a_reason(path: Path) -> None:
    result, entries, rejected = ingest(str(path.relative_to(FIXTURES)))
    if result.error:
        assert not result.items
        assert result.error.strip() and "\n" not in result.error
        return
    assert len(entries) + len(rejected) == len(result.items) + len(result.rejected)
    for reason in rejected:
        assert reason.strip()
    for entry in entries:
        assert_clean(entry)


def test_arxiv_current_rss_fields() -> None:
    _, entries, rejected = ingest("arxiv-rss/current/rss_cs.CL_2026-04-27_trimmed.xml")
    assert not rejected and len(entries) == 3
    first = entries[0]
    assert first.canonical_key == "arxiv:2604.22002" and first.version == 1
    assert first.title.startswith("When Cow Urine Cures Constipation on YouTube")
    # `Ratna Kandala,  Deepti`: the double space leaves no empty or padded author.
    assert first.authors[:3] == ["Anamta Khan", "Ratna Kandala", "Deepti"]
    assert first.categories == ["cs.CL"]
    assert first.url == "https://arxiv.org/abs/2604.22002"
    assert first.pdf_url == "https://arxiv.org/pdf/2604.22002"
    assert first.summary.startswith("Social media platforms have become primary channels")
    assert first.published_at == datetime(2026, 4, 27, 4, 0, tzinfo=UTC)


def test_arxiv_announce_types_versions_and_doi() -> None:
    _, entries, _ = ingest("arxiv-rss/current/rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml")
    got = {e.canonical_key: (e.version, e.announce_type) for e in entries}
    assert got == {
        "arxiv:2609.26811": (1, "new"),
        "arxiv:2609.26820": (1, "new"),
        "arxiv:2205.06398": (2, "cross"),  # has an arxiv:DOI too: the arXiv id wins
        "arxiv:2009.13987": (3, "replace"),
    }
    keyed = by_key(entries)
    assert keyed["arxiv:2205.06398"].categories == ["stat.ME", "stat.AP", "stat.ML"]
    assert keyed["arxiv:2609.26820"].authors == [
        "Naser Mansour", "Sidahmed Benabderrahmane", "Ameer Rahwan"
    ]  # fmt: skip


def test_arxiv_atom_variant() -> None:
    _, entries, _ = ingest("arxiv-rss/current/atom_cs.LG_2026-09-25_trimmed.xml")
    keyed = by_key(entries)
    smiles = keyed["arxiv:2609.28553"]
    assert smiles.title.startswith("SMILESGNN: Interpretable Clinical Toxicity Prediction")
    assert smiles.categories == ["cs.LG", "cs.AI"]
    assert smiles.authors[:2] == ["Quang Minh Nguyen", "Thuy Quynh Nguyen"]
    assert not smiles.summary.startswith("arXiv") and smiles.summary.startswith("Drug toxicity")
    assert keyed["arxiv:2402.10149"].version == 3


def test_arxiv_legacy_rdf() -> None:
    _, entries, _ = ingest("arxiv-rss/legacy-rdf/rdf_hep-ex_2018-05-23_trimmed.xml")
    keyed = by_key(entries)
    spin = keyed["arxiv:1805.08875"]
    assert spin.title == "Measurement of Transverse Single Spin Asymmetries."
    assert spin.authors == ["Christopher Dilks (STAR Collaboration)"]  # the <a> links are gone
    assert spin.categories == ["hep-ex"]
    hybrid = keyed["arxiv:1805.06430"]
    assert hybrid.version == 2 and hybrid.categories == ["nucl-th"]
    assert hybrid.title == "New Perspective on Hybrid Mesons."
    # No dates on legacy items: ingestion time.
    assert spin.published_at == NOW


def test_arxiv_api_responses() -> None:
    _, entries, _ = ingest(
        "arxiv-api/current/query_all-transformer_AND_cat-cs.LG_max5_2026-06-14.xml"
    )
    assert len(entries) == 5
    mana = by_key(entries)["arxiv:2606.13677"]
    assert mana.title == "Mana: Dexterous Manipulation of Articulated Tools"
    assert mana.authors == ["Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu"]
    assert mana.categories[0] == "cs.RO"  # the primary category comes first
    assert mana.version == 1
    assert mana.published_at == datetime(2026, 6, 11, 17, 59, 49, tzinfo=UTC)

    _, entries, _ = ingest(
        "arxiv-api/current/arxiv.py-golden/id_astro-ph_0601001_s0_m100_3150dca9dc76.body.xml"
    )
    assert [e.canonical_key for e in entries] == ["arxiv:astro-ph/0601001"]

    _, entries, _ = ingest(
        "arxiv-api/current/arxiv.py-golden/id_0808.05394_1707.08567_s0_m100_42e5aa0ec3af.body.xml"
    )
    assert [e.canonical_key for e in entries] == ["arxiv:1707.08567"]

    _, entries, _ = ingest("arxiv-api/legacy/arxiv.py-2016_id_list_1111.2011v2.xml")
    assert entries[0].canonical_key == "arxiv:1111.2011" and entries[0].version == 2
    assert entries[0].authors == ["James M. Murray", "Adrian Del Maestro", "Zlatko Tesanovic"]


@pytest.mark.parametrize(
    "rel",
    [
        "arxiv-api/current/arxiv.py-golden/id_abc_s0_m100_b79c8dcf6bc3.body.xml",
        "arxiv-api/legacy/arxiv-docs_user-manual_example_error-response_2007.xml",
    ],
)
def test_arxiv_api_error_feed_is_a_failure_with_its_message(rel: str) -> None:
    result, entries, _ = ingest(rel)
    assert result.kind == "arxiv_api" and not entries
    assert result.error is not None and result.error.startswith("arXiv API error: incorrect id")


@pytest.mark.parametrize(
    "rel",
    [
        "arxiv-api/current/arxiv.py-golden/id_0000.0000_s0_m100_8b51d9633a68.body.xml",
        "arxiv-rss/current/rss_cs.CL_2026-08-01_weekend-empty.xml",
        "arxiv-rss/current/rss_cs_2026-03-29_sunday-empty.xml",
    ],
)
def test_empty_feeds_are_healthy(rel: str) -> None:
    result, entries, rejected = ingest(rel)
    assert result.error is None and result.warning is None
    assert entries == [] and rejected == []


def test_hf_daily_papers_raw() -> None:
    raw = json.loads(
        (FIXTURES / "hf-daily-papers/api/daily_papers_2026-06-12_raw.json").read_text()
    )
    result, entries, rejected = ingest("hf-daily-papers/api/daily_papers_2026-06-12_raw.json")
    assert result.kind == "hf_daily" and not rejected and len(entries) == 30
    keyed = by_key(entries)
    for paper in raw:
        entry = keyed[f"arxiv:{paper['paper']['id']}"]
        assert entry.upvotes == paper["paper"]["upvotes"]
        assert entry.comments == paper["numComments"]
        assert entry.title == " ".join(paper["title"].split())
        assert entry.authors == [a["name"] for a in paper["paper"]["authors"]]
        assert entry.keywords == paper["paper"].get("ai_keywords", [])
        if paper["paper"].get("githubRepo"):
            assert entry.code_url == paper["paper"]["githubRepo"]
    first = keyed["arxiv:2606.00467"]
    assert first.published_at == datetime(2026, 5, 30, tzinfo=UTC)
    assert max(e.upvotes or 0 for e in entries) == 118


def test_hf_daily_papers_pretty_without_ai_fields() -> None:
    _, entries, _ = ingest("hf-daily-papers/api/daily_papers_2026-07-31_pretty.json")
    keyed = by_key(entries)
    sigma = keyed["arxiv:2607.27958"]
    assert sigma.title.startswith("Σ-Mem: An Online Reliability Memory")
    assert sigma.code_url == "https://github.com/declare-lab/sigma-mem"
    omni = keyed["arxiv:2607.23193"]
    assert omni.upvotes == 3 and omni.comments == 2 and omni.keywords == []


def test_community_rss_feeds_find_the_arxiv_id() -> None:
    _, takara, _ = ingest(
        "hf-daily-papers/community-rss/takara-tldr_daily-ai-papers_2026-04-30.xml"
    )
    assert len(takara) == 50 and all(e.canonical_key.startswith("arxiv:") for e in takara)
    assert by_key(takara)["arxiv:2604.26238"].title.startswith("EnerGS: Energy-Based Gaussian")
    _, feedgen, _ = ingest("hf-daily-papers/community-rss/hf-daily-papers_feedgen_2026-04-30.xml")
    harness = by_key(feedgen)["arxiv:2604.21003"]
    assert harness.title == "The Last Harness You'll Ever Build"
    assert "<img" not in harness.summary_html  # thumbnails are not carried into emails


def test_community_hf_rss_blob_is_split_into_authors_upvotes_and_summary() -> None:
    """ "Authors: … Upvotes: 1 Summary: …" in one description becomes three fields."""
    _, feedgen, _ = ingest("hf-daily-papers/community-rss/hf-daily-papers_feedgen_2026-04-30.xml")
    assert len(feedgen) == 22
    harness = by_key(feedgen)["arxiv:2604.21003"]
    assert harness.authors == ["Haebin Seong", "Li Yin", "Haoran Zhang"]
    assert harness.upvotes == 1
    assert harness.summary.startswith("AI agents are increasingly deployed on complex")
    assert "Authors:" not in harness.summary_html and "Upvotes:" not in harness.summary
    assert all(e.authors and e.upvotes is not None for e in feedgen)
    assert not any(e.summary.startswith(("Authors", "Upvotes", "Summary")) for e in feedgen)
    # Plain feeds are left alone: a takara abstract that says "Summary:" is not a blob.
    _, takara, _ = ingest(
        "hf-daily-papers/community-rss/takara-tldr_daily-ai-papers_2026-04-30.xml"
    )
    assert all(e.upvotes is None for e in takara)


def test_json_feeds() -> None:
    _, entries, _ = ingest("jsonfeed/jsonfeed-1.0_daringfireball_2020-01_trimmed.json")
    assert [e.authors for e in entries] == [["John Gruber"], ["John Gruber"]]
    assert entries[0].title == "How Jeff Bezos’s iPhone X Was Hacked"
    assert entries[0].published_at == datetime(2020, 1, 24, 23, 46, 57, tzinfo=UTC)
    _, entries, _ = ingest("jsonfeed/jsonfeed-1.1_spec-example_microblog.json")
    assert entries[0].title == "Cats are neat."  # no title in the item: its text's first line
    result, entries, _ = ingest("feedparser-corpus/json/example.json")
    assert result.kind == "jsonfeed" and all("<script" not in e.summary_html for e in entries)


def test_seed_feed_has_upvotes_and_code_links() -> None:
    body = (FIXTURES.parents[2] / "seeds" / "trending-papers.json").read_bytes()
    seed = json.loads(body)
    result = parse_document(body, {})
    entries = [normalize(i, NOW) for i in result.items]
    assert len(entries) == len(seed["items"]) == 61
    for item, entry in zip(seed["items"], entries, strict=True):
        assert entry.upvotes == item["_paper"]["upvotes"]
        assert entry.code_url == item["_paper"].get("code_url", entry.code_url)
    assert entries[0].code_url == "https://github.com/weeknan/DR-Tune"


@pytest.mark.parametrize(
    "rel",
    [
        "feedparser-corpus/wellformed/sanitize/entry_content_script.xml",
        "feedparser-corpus/wellformed/sanitize/entry_content_script_cdata.xml",
        "feedparser-corpus/wellformed/sanitize/entry_content_script_inline.xml",
        "feedparser-corpus/wellformed/sanitize/item_description_script_cdata.xml",
        "feedparser-corpus/wellformed/sanitize/entry_content_iframe.xml",
    ],
)
def test_corpus_sanitizer_cases_keep_only_the_safe_text(rel: str) -> None:
    _, entries, _ = ingest(rel)
    [entry] = entries
    assert entry.summary.startswith("safe")
    assert "<script" not in entry.summary_html.lower() and "<iframe" not in entry.summary_html


def test_corpus_title_script_is_stripped() -> None:
    _, [entry], _ = ingest("feedparser-corpus/wellformed/sanitize/entry_title_script.xml")
    assert entry.title == "safe description"


def test_corpus_plain_text_title_keeps_its_brackets() -> None:
    _, [entry], _ = ingest(
        "feedparser-corpus/wellformed/atom10/entry_title_text_plain_brackets.xml"
    )
    assert entry.title == "History of the <blink> tag"  # text, not markup: escaped when shown


def test_corpus_garbage_and_truncated_documents_are_rejected() -> None:
    for rel in (
        "feedparser-corpus/illformed/rss_empty_document.xml",
        "feedparser-corpus/encoding/bozo_invalid-bytes-with-bom.xml",
        "seed-page/trending-papers-page.txt",
    ):
        result, entries, _ = ingest(rel)
        assert result.error and not entries, rel
