"""Reading a reader's library file: BibTeX, RIS, CSL-JSON (Zotero's JSON export) or one
arXiv id or DOI per line, told apart by the content (never by the file name).

Pure: no database, no network. Bounded: at most `MAX_BYTES` of input and `MAX_PAPERS`
entries (the number of votes and liked papers a reader's model reads, see
`vote_store.READ_LIMIT`), each title and abstract cut to a sane length. Anything wrong is
one `LibraryFileError` line naming the problem and where (line or entry), and nothing of
the file is kept. The parsers are the well-kept ones (bibtexparser, rispy, json), not
regular expressions; only the plain list of ids is read line by line.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rispy  # type: ignore[import-untyped]  # no type hints shipped
from bibtexparser.entrypoint import parse_string as parse_bibtex
from bibtexparser.middlewares import LatexDecodingMiddleware, SeparateCoAuthors

from digestd.ranking import authors as author_names

MAX_BYTES = 5 * 1024 * 1024
MAX_PAPERS = 200
MAX_TITLE = 500
MAX_ABSTRACT = 5000
MAX_AUTHORS = 100  # per paper, for counting frequent authors
TOP_AUTHORS, MIN_AUTHOR_PAPERS = 5, 2
FORMATS = ("BibTeX", "RIS", "CSL-JSON", "ids")

_ID = r"(\d{4}\.\d{4,5}|[a-z][a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?"
_ARXIV_URL = r"https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/"
_ARXIV = re.compile(r"^(?:arxiv:\s*|" + _ARXIV_URL + r")?" + _ID + r"(?:\.pdf)?/?$", re.IGNORECASE)
# arXiv's own DOIs (DataCite): 10.48550/arXiv.2310.06825 is arXiv paper 2310.06825.
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\." + _ID + r"$", re.IGNORECASE)
_ARXIV_IN_TEXT = re.compile(r"arxiv(?:\.org/(?:abs|pdf)/|:\s*)" + _ID, re.IGNORECASE)
_DOI = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)
_BIBTEX_START = re.compile(r"^\s*@[A-Za-z]+\s*[{(]", re.MULTILINE)
_RIS_TAG = re.compile(r"^TY  - ", re.MULTILINE)


class LibraryFileError(ValueError):
    """A library file that cannot be read: one line saying what and where."""


@dataclass(frozen=True)
class LibraryPaper:
    """One paper of the library: its text (empty for a bare id), its ids, its authors."""

    title: str = ""
    abstract: str = ""
    arxiv_id: str | None = None
    doi: str | None = None
    url: str | None = None
    authors: tuple[str, ...] = ()
    where: str = ""  # "line 3", "entry 2": for messages

    @property
    def ref(self) -> str | None:
        """The paper's id as stored: "arxiv:2310.06825", "doi:10.1/x", or None."""
        if self.arxiv_id:
            return f"arxiv:{self.arxiv_id}"
        if self.doi:
            return f"doi:{self.doi}"
        return None


@dataclass(frozen=True)
class LibraryFile:
    """What a file held: its format and its papers (in the file's order)."""

    format: str
    papers: tuple[LibraryPaper, ...]

    def frequent_authors(self) -> list[str]:
        """The TOP_AUTHORS authors with the most papers here (at least MIN_AUTHOR_PAPERS),
        spelled as most of their papers spell them; name variants count as one person."""
        return frequent_authors(p.authors for p in self.papers)


def frequent_authors(
    papers_authors: Iterable[Sequence[str]],
    top: int = TOP_AUTHORS,
    minimum: int = MIN_AUTHOR_PAPERS,
) -> list[str]:
    """The authors on most papers (once a paper), as "First Last", most papers first."""
    counts: Counter[tuple[str, str]] = Counter()
    spellings: dict[tuple[str, str], Counter[str]] = {}
    for names in papers_authors:
        seen: set[tuple[str, str]] = set()
        for raw in names[:MAX_AUTHORS]:
            # Initials and full first names of one person meet on the initial.
            key = author_names.key(raw)
            if not key[0]:
                continue
            if key in seen:
                continue
            seen.add(key)
            counts[key] += 1
            spellings.setdefault(key, Counter())[_display(raw)] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = []
    for key, n in ranked[:top]:
        if n < minimum:
            break
        # The longest of the most frequent spellings: "Yann LeCun" over "Y. LeCun".
        best = max(spellings[key].items(), key=lambda sc: (sc[1], len(sc[0]), sc[0]))
        out.append(best[0])
    return out


def _display(raw: str) -> str:
    """ "LeCun, Yann" → "Yann LeCun" (what the reader would type)."""
    text = " ".join(raw.split())
    if text.count(",") == 1:
        last, first = (p.strip() for p in text.split(","))
        return f"{first} {last}".strip()
    return text


def read(data: bytes) -> LibraryFile:
    """The papers of a library file, or LibraryFileError (one line) for anything wrong."""
    if len(data) > MAX_BYTES:
        raise LibraryFileError(
            f"the file is larger than {MAX_BYTES // 1024 // 1024} MB (export a collection instead)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LibraryFileError(f"line {line}: the file is not UTF-8 text") from None
    if "\x00" in text:
        raise LibraryFileError("the file is not text (it contains NUL bytes)")
    stripped = text.lstrip()
    if not stripped:
        raise LibraryFileError("the file is empty")
    if stripped[0] in "[{":
        fmt, papers = "CSL-JSON", _csl_json(text)
    elif _BIBTEX_START.search(text):
        fmt, papers = "BibTeX", _bibtex(text)
    elif _RIS_TAG.search(text):
        fmt, papers = "RIS", _ris(text)
    else:
        fmt, papers = "ids", _ids(text)
    if not papers:
        raise LibraryFileError(f"no papers found in the {fmt} file")
    return LibraryFile(fmt, tuple(papers))


def _check_count(count: int, what: str) -> None:
    if count > MAX_PAPERS:
        raise LibraryFileError(
            f"the file has {count} {what}; at most {MAX_PAPERS} are read (as many as a "
            "reader's votes): export a collection or the papers you read most"
        )


def _clean(value: object, limit: int) -> str:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = " ".join(str(value or "").replace("{", "").replace("}", "").split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0]
    return text


def arxiv_of(value: str | None) -> str | None:
    """The arXiv id (no version) in an id, link or arXiv DOI, or None."""
    if not value:
        return None
    text = value.strip()
    for pattern in (_ARXIV, _ARXIV_DOI):
        match = pattern.match(text)
        if match:
            return match.group(1)
    return None


def doi_of(value: str | None) -> str | None:
    """A DOI (lower-cased) from "10.x/y", "doi:10.x/y" or a doi.org link, or None."""
    if not value:
        return None
    match = _DOI.match(value.strip())
    return match.group(1).rstrip(".,;").lower() if match else None


def _paper(
    where: str,
    title: object,
    abstract: object,
    authors: Sequence[str],
    ids: Iterable[str | None],
    urls: Iterable[str | None] = (),
) -> LibraryPaper | None:
    arxiv = doi = url = None
    for value in ids:
        arxiv = arxiv or arxiv_of(value)
        doi = doi or doi_of(value)
    for value in urls:
        if value and value.strip().lower().startswith(("http://", "https://")):
            url = url or value.strip()[:2048]
            arxiv = arxiv or arxiv_of(value)
            doi = doi or doi_of(value)
    if doi and arxiv_of(doi):
        arxiv, doi = arxiv or arxiv_of(doi), None
    clean_title = _clean(title, MAX_TITLE)
    if not clean_title and not (arxiv or doi or url):
        return None
    return LibraryPaper(
        title=clean_title,
        abstract=_clean(abstract, MAX_ABSTRACT),
        arxiv_id=arxiv,
        doi=doi,
        url=url,
        authors=tuple(" ".join(a.split()) for a in authors[:MAX_AUTHORS] if a and a.strip()),
        where=where,
    )


def _arxiv_in_text(*values: object) -> str | None:
    for value in values:
        match = _ARXIV_IN_TEXT.search(str(value or ""))
        if match:
            return match.group(1)
    return None


def _bibtex(text: str) -> list[LibraryPaper]:
    _check_count(len(_BIBTEX_START.findall(text)), "BibTeX entries")
    # Its warnings about a broken block would be a second, multi-line message: the first
    # failed block is reported below, in one line.
    logging.getLogger("bibtexparser").setLevel(logging.ERROR)
    try:
        library = parse_bibtex(
            text, append_middleware=[LatexDecodingMiddleware(), SeparateCoAuthors()]
        )
    except Exception as exc:  # the parser's own errors: one line, whatever their type
        raise LibraryFileError(f"BibTeX could not be read: {_first_line(exc)}") from None
    if library.failed_blocks:
        block = library.failed_blocks[0]
        line = (block.start_line or 0) + 1
        name = " ".join(str(block.raw).split())[:40]
        raise LibraryFileError(f"line {line}: a BibTeX entry is malformed ({name}…)")
    papers = []
    for entry in library.entries:
        fields = {k.lower(): v.value for k, v in entry.fields_dict.items()}
        raw_authors = fields.get("author") or []
        names = raw_authors if isinstance(raw_authors, list) else [str(raw_authors)]
        eprint = str(fields.get("eprint") or "")
        paper = _paper(
            f"line {(entry.start_line or 0) + 1} ({entry.key})",
            fields.get("title"),
            fields.get("abstract"),
            [str(n) for n in names],
            [eprint, str(fields.get("doi") or ""), _arxiv_in_text(fields.get("journal"))],
            [str(fields.get("url") or "")],
        )
        if paper is not None:
            papers.append(paper)
    return papers


def _ris(text: str) -> list[LibraryPaper]:
    starts = [text.count("\n", 0, m.start()) + 1 for m in _RIS_TAG.finditer(text)]
    _check_count(len(starts), "RIS records")
    try:
        records = rispy.loads(text)
    except Exception as exc:  # rispy raises several types for broken records
        raise LibraryFileError(f"RIS could not be read: {_first_line(exc)}") from None
    if len(records) < len(starts):
        line = starts[len(records)]
        raise LibraryFileError(f'line {line}: a RIS record has no end ("ER  - ")')
    papers = []
    for n, record in enumerate(records):
        title = record.get("title") or record.get("primary_title") or record.get("secondary_title")
        abstract = record.get("abstract") or record.get("notes_abstract") or ""
        names = [*record.get("authors", []), *record.get("first_authors", [])]
        urls = record.get("urls") or []
        paper = _paper(
            f"line {starts[n]} (record {n + 1})",
            title,
            abstract,
            [str(a) for a in names],
            [str(record.get("doi") or ""), _arxiv_in_text(record.get("journal_name"))],
            [str(u) for u in urls],
        )
        if paper is not None:
            papers.append(paper)
    return papers


def _csl_json(text: str) -> list[LibraryPaper]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LibraryFileError(f"line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise LibraryFileError("CSL-JSON must be a list of papers (Zotero: Export → CSL JSON)")
    _check_count(len(data), "entries")
    papers = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise LibraryFileError(f"entry {n}: not an object with a title")
        title = item.get("title")
        if title is not None and not isinstance(title, str):
            raise LibraryFileError(f"entry {n}: the title is not text")
        names = [_csl_name(a) for a in item.get("author") or [] if isinstance(a, Mapping)]
        ids = [_str(item.get("DOI")), _str(item.get("number")), _str(item.get("id"))]
        paper = _paper(
            f"entry {n}",
            title,
            _str(item.get("abstract")),
            [a for a in names if a],
            [*ids, _arxiv_in_text(item.get("container-title"), item.get("note"))],
            [_str(item.get("URL"))],
        )
        if paper is not None:
            papers.append(paper)
    return papers


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _csl_name(author: Mapping[str, Any]) -> str:
    if isinstance(author.get("literal"), str):
        return str(author["literal"])
    family, given = _str(author.get("family")), _str(author.get("given"))
    return f"{family}, {given}" if family and given else family or given


def _ids(text: str) -> list[LibraryPaper]:
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    wanted = [(n, line) for n, line in lines if line and not line.startswith("#")]
    _check_count(len(wanted), "lines")
    papers = []
    for n, line in wanted:
        arxiv, doi = arxiv_of(line), doi_of(line)
        if doi and arxiv_of(doi):
            arxiv, doi = arxiv_of(doi), None
        if not arxiv and not doi:
            shown = line if len(line) <= 60 else line[:57] + "…"
            raise LibraryFileError(
                f"line {n}: {shown!r} is neither an arXiv id nor a DOI (expected BibTeX, "
                "RIS, CSL-JSON, or one arXiv id or DOI per line)"
            )
        papers.append(LibraryPaper(arxiv_id=arxiv, doi=doi, where=f"line {n}"))
    return papers


def _first_line(exc: Exception) -> str:
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return text[:200]
