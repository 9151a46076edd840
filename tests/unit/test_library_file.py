"""Reading a reader's library file (no database): BibTeX, RIS, CSL-JSON and id lists told
apart by their content, their papers' texts and ids, the frequent authors, and one line for
every file that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digestd.subscribers.library_file import (
    MAX_BYTES,
    MAX_PAPERS,
    LibraryFileError,
    frequent_authors,
    read,
)

LIBRARY = Path(__file__).parents[1] / "fixtures" / "library" / "interpretability.bib"

RIS = """TY  - JOUR
TI  - Attention Is All You Need
AU  - Vaswani, Ashish
AU  - Shazeer, Noam
AB  - We propose the Transformer, based solely on attention.
DO  - 10.48550/arXiv.1706.03762
ER  - 

TY  - CONF
T1  - Deep Residual Learning for Image Recognition
A1  - He, Kaiming
N2  - We present a residual learning framework.
DO  - 10.1109/CVPR.2016.90
UR  - https://doi.org/10.1109/CVPR.2016.90
ER  - 
"""

CSL = [
    {
        "id": "http://zotero.org/users/1/items/ABC",
        "type": "article",
        "title": "Attention Is All You Need",
        "abstract": "We propose the Transformer.",
        "author": [{"family": "Vaswani", "given": "Ashish"}, {"literal": "Google Brain"}],
        "URL": "http://arxiv.org/abs/1706.03762",
    },
    {
        "id": "x2",
        "type": "article-journal",
        "title": "Deep Residual Learning",
        "DOI": "10.1109/CVPR.2016.90",
        "author": [{"family": "He", "given": "Kaiming"}],
    },
]


def test_bibtex_gives_titles_abstracts_arxiv_ids_and_authors() -> None:
    got = read(LIBRARY.read_bytes())
    assert got.format == "BibTeX" and len(got.papers) == 20
    first = got.papers[0]
    assert first.title == "Toy Models of Superposition"
    assert first.abstract.startswith("Neural networks often pack many unrelated features")
    assert "\n" not in first.abstract  # one line of text, as the model reads it
    assert first.ref == "arxiv:2209.10652"
    assert first.authors[0] == "Elhage, Nelson"
    ioi = next(p for p in got.papers if p.title.startswith("Interpretability in the Wild"))
    assert ioi.title.endswith("in GPT-2 Small")  # braces that protect case are dropped
    acdc = next(p for p in got.papers if "Automated Circuit" in p.title)
    assert "Garriga-Alonso, Adrià" in acdc.authors  # LaTeX accents decoded
    # The people with most papers here, as a reader would type them, most papers first.
    assert got.frequent_authors()[:3] == ["Neel Nanda", "Chris Olah", "Nelson Elhage"]  # 6, 6, 4


def test_ris_records_by_rispy() -> None:
    got = read(RIS.encode())
    assert got.format == "RIS"
    attention, resnet = got.papers
    assert attention.title == "Attention Is All You Need"
    assert attention.ref == "arxiv:1706.03762"  # arXiv's own DOI is its arXiv id
    assert attention.authors == ("Vaswani, Ashish", "Shazeer, Noam")
    assert resnet.title == "Deep Residual Learning for Image Recognition"  # T1, A1, N2 too
    assert resnet.abstract == "We present a residual learning framework."
    assert resnet.ref == "doi:10.1109/cvpr.2016.90"


def test_csl_json_as_zotero_exports_it() -> None:
    got = read(json.dumps(CSL, indent=2).encode())
    assert got.format == "CSL-JSON"
    attention, resnet = got.papers
    assert attention.ref == "arxiv:1706.03762"  # from the URL
    assert attention.authors == ("Vaswani, Ashish", "Google Brain")
    assert attention.abstract == "We propose the Transformer."
    assert resnet.ref == "doi:10.1109/cvpr.2016.90" and resnet.abstract == ""


def test_a_plain_list_of_arxiv_ids_and_dois() -> None:
    text = (
        "\ufeff# my reading list\n2310.06825\narXiv:2401.04088v2\n"
        "https://arxiv.org/abs/hep-th/9901001\n\n10.1145/3290605.3300233\n"
        "https://doi.org/10.1109/CVPR.2016.90\n"
    )
    got = read(text.encode())
    assert got.format == "ids"
    assert [p.ref for p in got.papers] == [
        "arxiv:2310.06825",
        "arxiv:2401.04088",
        "arxiv:hep-th/9901001",
        "doi:10.1145/3290605.3300233",
        "doi:10.1109/cvpr.2016.90",
    ]
    assert all(p.title == "" for p in got.papers)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"2310.06825\nnot an id at all\n", "line 2: 'not an id at all' is neither an arXiv id"),
        (
            b'@article{a, title={Fine}}\n@misc{b, title = "Broken\n@article{c, title={Ok}}\n',
            "line 2: a BibTeX entry is malformed (@misc{b, title",
        ),
        (b"TY  - JOUR\nTI  - no end\n", 'line 1: a RIS record has no end ("ER  - ")'),
        (b'[{"title": "a"},\n {"title": ', "line 2: invalid JSON"),
        (b'[{"title": 3}]', "entry 1: the title is not text"),
        (b'{"title": "x"}', "CSL-JSON must be a list of papers"),
        (b"[1, 2]", "entry 1: not an object"),
        (b"line one\n\xff\xfe", "line 2: the file is not UTF-8 text"),
        (b"\x00\x01binary", "the file is not text"),
        (b"[]", "no papers found in the CSL-JSON file"),
    ],
)
def test_a_file_that_cannot_be_used_is_one_line_saying_where(data: bytes, message: str) -> None:
    with pytest.raises(LibraryFileError) as caught:
        read(data)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_hostile_sizes_are_refused_before_parsing() -> None:
    with pytest.raises(LibraryFileError, match="larger than 5 MB"):
        read(b"% " + b"x" * MAX_BYTES)
    too_many = "".join(f"@misc{{k{n}, title={{Paper {n}}}}}\n" for n in range(MAX_PAPERS + 1))
    with pytest.raises(LibraryFileError, match=f"has {MAX_PAPERS + 1} BibTeX entries; at most"):
        read(too_many.encode())
    ids = "".join(f"2310.{n:05d}\n" for n in range(MAX_PAPERS + 1))
    with pytest.raises(LibraryFileError, match=f"has {MAX_PAPERS + 1} lines; at most"):
        read(ids.encode())


def test_long_texts_are_cut() -> None:
    entry = "@misc{k, title={" + "word " * 400 + "}, abstract={" + "more " * 4000 + "}}"
    [paper] = read(entry.encode()).papers
    assert len(paper.title) <= 500 and len(paper.abstract) <= 5000


def test_frequent_authors_count_name_variants_once_a_paper() -> None:
    papers = [
        ["LeCun, Yann", "Bengio, Yoshua"],
        ["Y. LeCun", "Hinton, Geoffrey"],
        ["Yann LeCun", "Yann LeCun"],  # twice on one paper counts once
        ["Bengio, Yoshua"],
        ["Solo, Han"],
    ]
    assert frequent_authors(papers) == ["Yann LeCun", "Yoshua Bengio"]  # Solo: one paper
