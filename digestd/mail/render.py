"""Digest bodies: rendered once per profile with placeholders, personalized per subscriber.

Jinja2 renders (autoescaped HTML, plain text), css-inline moves the stylesheet into style
attributes (keeping @media rules for phones), and the per-subscriber values (address and
signed links) are left as placeholders carrying a random per-render marker, so that
`personalize` is a few `str.replace` calls and feed text can never forge a placeholder.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from html import escape as html_escape
from typing import Any, Protocol

import css_inline
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)

from digestd.core.config import Settings
from digestd.core.models import Entry
from digestd.core.paths import data_dir
from digestd.mail import budget
from digestd.mail.gist import gist
from digestd.mail.mime import one_line
from digestd.mail.subject import count_label, date_label, subject_line
from digestd.ranking.select import Pick, Profile

FORMATS = ("html", "text")
SLOTS = ("email", "unsubscribe_url", "preferences_url", "view_url", "vote_url")
# Per-paper slots of the vote links' MACs: "vote-<entry id>-up" / "vote-<entry id>-down"
# (see tokens.py: one signed token per message in `vote_url`, one short MAC per link).
VOTE_SLOT_PREFIX = "vote-"
MAX_AUTHORS = 3
# Categories a feed item carries as tags (the pages show the first 4).
MAX_TAGS = 20
# Authors a feed item names one by one (a collaboration paper can list a thousand).
MAX_FEED_AUTHORS = 100
EXCERPT_MAX_CHARS = 420
EXCERPT_MAX_SENTENCES = 3
# Gmail clips a message body above 102 KB; renders are checked against a margin below it.
GMAIL_CLIP_BYTES = 102 * 1024
PAPER_CACHE_SIZE = 4096

# Sentence ends for a 2–3 sentence excerpt. A regex suffices for abstracts (no abbreviation
# dictionary needed at this precision; a full sentence tokenizer would be a large dependency).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_SAFE_URL = re.compile(r"^https?://[^\s<>\"']+$", re.IGNORECASE)


@dataclass(frozen=True)
class DigestBody:
    """One rendered digest for a profile; `text`/`html` hold per-subscriber placeholders."""

    subject: str
    text: str
    html: str | None
    entry_ids: tuple[int, ...]
    marker: str

    @cached_property
    def _text_parts(self) -> list[str]:
        return _split(self.text, self.marker)

    @cached_property
    def _html_parts(self) -> list[str] | None:
        return None if self.html is None else _split(self.html, self.marker)

    def slot_parts(self) -> list[tuple[str, list[str]]]:
        """(MIME subtype, [literal, slot, literal, …]) per part: text, then HTML if any.
        Values for the slots come from `slot_values` (escaped per subtype)."""
        out = [("plain", self._text_parts)]
        if self._html_parts is not None:
            out.append(("html", self._html_parts))
        return out


@dataclass(frozen=True)
class PersonalDigest:
    """A digest for one subscriber, ready for `mime.build_digest_message`."""

    subject: str
    text: str
    html: str | None


def _split(rendered: str, marker: str) -> list[str]:
    # Alternating [literal, slot name, literal, slot name, ..., literal]: personalizing is
    # then one join per part instead of one full scan of the body per slot.
    # str.split, not re.split: the marker is random per render, so a regex would be compiled
    # for every render and fill re's pattern cache (~22 MB in bench_delivery.py).
    prefix = f"--{marker}-"
    head, *chunks = rendered.split(prefix)
    parts = [head]
    for chunk in chunks:
        slot, sep, tail = chunk.partition("--")
        if sep and (slot in SLOTS or slot.startswith(VOTE_SLOT_PREFIX)):
            parts += [slot, tail]
        else:  # the marker followed by something that is not a slot: literal text
            parts[-1] += prefix + chunk
    return parts


def _fill(parts: list[str], values: dict[str, str]) -> str:
    out = parts[:]
    for i in range(1, len(out), 2):
        out[i] = values.get(out[i], "")
    return "".join(out)


def vote_slots(entry_ids: Sequence[int]) -> tuple[str, ...]:
    """The vote-MAC slot names of a digest's papers, in `tokens.vote_macs` order."""
    # Interned: a pass keeps these for every cached digest, and the names repeat.
    return tuple(
        sys.intern(f"{VOTE_SLOT_PREFIX}{entry_id}-{direction}")
        for entry_id in entry_ids
        for direction in ("up", "down")
    )


def _placeholder(marker: str, slot: str) -> str:
    # Only [a-z0-9_-]: autoescaping and CSS inlining leave it untouched.
    return f"--{marker}-{slot}--"


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    """ "A, B, C et al." when there are more than `limit` authors."""
    names = [" ".join(a.split()) for a in authors if a and a.strip()]
    if len(names) > limit:
        return ", ".join(names[:limit]) + " et al."
    return ", ".join(names)


def excerpt(summary: str, max_chars: int = EXCERPT_MAX_CHARS) -> str:
    """The first 2–3 sentences of an abstract, cut at a word when still too long."""
    text = " ".join((summary or "").split())
    if not text:
        return ""
    sentences = _SENTENCE_END.split(text)
    out = sentences[0]
    for sentence in sentences[1:EXCERPT_MAX_SENTENCES]:
        if len(out) >= 160 and len(out) + 1 + len(sentence) > max_chars:
            break
        out = f"{out} {sentence}"
    if len(out) > max_chars:
        cut = out[: max_chars - 1].rsplit(" ", 1)[0].rstrip(",;:-–— ")
        out = cut + "…"
    return out


def safe_url(url: str | None) -> str | None:
    """`url` when it is a plain http(s) link, else None (no javascript: or data: in email)."""
    if not url:
        return None
    url = url.strip()
    return url if _SAFE_URL.match(url) else None


class TemplateProblem(Exception):
    """A template that does not load or render (usually an override in DIGESTD_TEMPLATES_DIR):
    one line naming the file and, where known, the line."""


def _template_problem(name: str, exc: TemplateError) -> TemplateProblem:
    where = name
    if isinstance(exc, TemplateSyntaxError):
        where = f"{exc.filename or name} line {exc.lineno}"
    else:
        # Jinja rewrites tracebacks so template frames carry the template's file and line;
        # the innermost one is where rendering failed (maybe an extended layout).
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.endswith((".html", ".htm", ".txt", ".xml")):
                where = f"{filename} line {tb.tb_lineno}"
            tb = tb.tb_next
    return TemplateProblem(f"template {where}: {one_line(exc.message or type(exc).__name__)}")


class Renderer:
    """Renders digests from `templates/email/` (overridable via DIGESTD_TEMPLATES_DIR)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._statics: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()

    @cached_property
    def env(self) -> Environment:
        """The Jinja2 environment: the override directory first, then the shipped templates."""
        loaders = []
        if self.settings.templates_dir is not None:
            loaders.append(FileSystemLoader(str(self.settings.templates_dir)))
        loaders.append(FileSystemLoader(str(data_dir("templates"))))
        return Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml")),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _static(self, entry: Entry) -> dict[str, Any]:
        # A paper's own fields are the same in every digest that carries it; subscribers
        # ranked by their votes get digests of their own, mostly of the same papers.
        key = (
            entry.id,
            entry.version,
            entry.title,
            entry.url,
            entry.code_url,
            entry.upvotes,
            len(entry.summary or ""),
        )
        found = self._statics.get(key)
        if found is None:
            found = _paper_static(self.env, entry)
            self._statics[key] = found
            if len(self._statics) > PAPER_CACHE_SIZE:
                self._statics.popitem(last=False)
        return found

    @cached_property
    def _inliner(self) -> css_inline.CSSInliner:
        return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    def inline_css(self, html: str) -> str:
        """Move <style> rules into style attributes (email clients drop stylesheets)."""
        return str(self._inliner.inline(html))

    def render_html(self, name: str, **context: Any) -> str:
        """Render an HTML email template (e.g. one extending email/layout.html), CSS inlined."""
        context.setdefault("from_address", self.settings.from_address)
        try:
            rendered = self.env.get_template(name).render(**context)
        except TemplateError as exc:
            raise _template_problem(name, exc) from exc
        return self.inline_css(rendered)

    def render_text(self, name: str, **context: Any) -> str:
        """Render a plain-text template."""
        context.setdefault("from_address", self.settings.from_address)
        try:
            return self.env.get_template(name).render(**context)
        except TemplateError as exc:
            raise _template_problem(name, exc) from exc

    def render_digest(
        self, profile: Profile, picks: Sequence[Pick], *, day: date, fmt: str = "html"
    ) -> DigestBody:
        """Render one profile's digest once, dated `day` (the subscriber's local date);
        per-subscriber values stay placeholders."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        # A marker feed content already contains could be substituted by personalize;
        # 64 random bits make that practically impossible, and we check anyway.
        haystack = "\n".join(
            f"{p.entry.title}\n{p.entry.summary}\n{p.entry.url}\n{p.entry.code_url}\n"
            f"{' '.join(p.entry.authors or [])}\n{' '.join(p.entry.categories or [])}\n{p.reason}"
            for p in picks
        )
        marker = secrets.token_hex(8)
        while marker in haystack:
            marker = secrets.token_hex(8)
        papers = [_paper(p, marker, self._static(p.entry)) for p in picks]
        subject = digest_subject(day, [p.entry for p in picks])
        context: dict[str, Any] = {
            "title": subject,
            "date_label": date_label(day),
            "count_label": count_label(len(papers)),
            "preheader": _preheader(papers),
            "papers": papers,
            "from_address": self.settings.from_address,
            **{slot: _placeholder(marker, slot) for slot in SLOTS},
        }
        text = self.render_text("email/digest.txt", **context)
        html = self._html_within_budget(context, marker) if fmt == "html" else None
        return DigestBody(
            subject=subject,
            text=text,
            html=html,
            entry_ids=tuple(p.entry.id for p in picks if p.entry.id is not None),
            marker=marker,
        )

    def _html_within_budget(self, context: dict[str, Any], marker: str) -> str:
        """The digest's HTML with as many papers in full as fit Gmail's clipping size, the
        rest by title, then "N more papers in your browser" (mail/budget.py)."""
        papers = context["papers"]

        def render(layout: budget.Layout) -> str:
            full, titles = layout
            return self.render_html(
                "email/digest.html",
                **{
                    **context,
                    "papers": papers[:full],
                    "titles": papers[full : full + titles],
                    "more_count": len(papers) - full - titles,
                    "more_label": count_label(len(papers) - full - titles),
                },
            )

        def size(html: str) -> int:
            slots = _split(html, marker)[1::2]
            return budget.sent_size(html, marker, slots, self.settings.base_url)

        return budget.fit(len(papers), render, size)

    def personalize(
        self,
        body: DigestBody,
        *,
        email: str,
        unsubscribe_url: str,
        preferences_url: str,
        view_url: str = "",
        vote_url: str = "",
        vote_macs: Sequence[str] = (),
    ) -> PersonalDigest:
        """Fill in one subscriber's address and signed links: string substitution only.
        `vote_url` and `vote_macs` come from tokens.links(..."vote"...) and vote_macs."""
        values = slot_values(
            email=email,
            unsubscribe_url=unsubscribe_url,
            preferences_url=preferences_url,
            view_url=view_url,
            vote_url=vote_url,
            vote_macs=dict(zip(vote_slots(body.entry_ids), vote_macs, strict=False)),
        )
        text = _fill(body._text_parts, values["plain"])
        html_parts = body._html_parts
        html = None if html_parts is None else _fill(html_parts, values["html"])
        return PersonalDigest(subject=body.subject, text=text, html=html)


def slot_values(
    *,
    email: str,
    unsubscribe_url: str,
    preferences_url: str,
    view_url: str = "",
    vote_url: str = "",
    vote_macs: dict[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """One subscriber's slot values per MIME subtype, escaped for it (HTML-escaped in HTML).
    `vote_macs` maps `vote_slots` names to MACs (hex digits: the same in every part)."""
    plain = {
        "email": email,
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "view_url": view_url,
        "vote_url": vote_url,
    }
    html = {k: html_escape(v, quote=True) for k, v in plain.items()}
    if vote_macs:
        plain.update(vote_macs)
        html.update(vote_macs)
    return {"plain": plain, "html": html}


class PaperFields(dict[str, Any]):
    """A paper's template fields: a dict whose keys also read as attributes.

    Jinja reads `p.title` by trying the attribute first and the key only after catching the
    AttributeError; on a plain dict that is an exception per field per paper (≈150 a
    digest, a tenth of a render). Here the attribute is found at once. `p["title"]` and
    the dict methods work as before (no field is named like one)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _paper(pick: Pick, marker: str, static: dict[str, Any]) -> PaperFields:
    entry_id = pick.entry.id or 0
    vote = _placeholder(marker, "vote_url")
    return PaperFields(
        static,
        reason=pick.reason,
        # "More / less like this": the subscriber's vote token and a MAC per link are slots.
        more_url=f"{vote}/{entry_id}/up/{_placeholder(marker, f'vote-{entry_id}-up')}",
        less_url=f"{vote}/{entry_id}/down/{_placeholder(marker, f'vote-{entry_id}-down')}",
    )


def _paper_static(env: Environment, entry: Entry) -> dict[str, Any]:
    """What a paper shows whoever gets it (cached per paper by `Renderer`): `paper_fields`
    plus the text part's wrapped gist and excerpt."""
    fields = paper_fields(entry)

    # The text part's wrapped texts, computed once per paper with Jinja's own filters
    # (templates may still wrap `gist` themselves): textwrap was a fifth of a render.
    def wrapped(text: str) -> str:
        lines = env.filters["wordwrap"](
            env, text, 72, break_long_words=False, break_on_hyphens=False
        )
        return str(env.filters["indent"](lines, 3, first=True))

    return {
        **fields,
        "gist_text": wrapped(fields["gist"]),
        "excerpt_text": wrapped(fields["excerpt"]),
    }


class PaperLike(Protocol):
    """What a rendered paper reads: an Entry, or a row with these columns."""

    title: str
    url: str
    authors: list[str]
    categories: list[str]
    summary: str
    upvotes: int
    code_url: str | None


def paper_fields(entry: PaperLike) -> dict[str, Any]:
    """A paper as every template shows it (digest mails, the web digest, the public pages):
    clean one-line title, http(s) links only, shortened authors (and each one, for feeds),
    its gist (the sentence stating the contribution), a 2–3 sentence excerpt."""
    authors = shorten_authors(entry.authors or [])
    cats = [c for c in (entry.categories or []) if c and c.strip()]
    meta = [m for m in (authors, ", ".join(cats[:4])) if m]
    return {
        "title": " ".join((entry.title or "(untitled)").split()),
        "url": safe_url(entry.url),
        "authors": authors,
        "author_names": [" ".join(a.split()) for a in entry.authors or [] if a and a.strip()][
            :MAX_FEED_AUTHORS
        ],
        "categories": cats[:4],
        "tags": cats[:MAX_TAGS],
        "meta": " · ".join(meta),
        "gist": gist(entry.summary or ""),
        "abstract": entry.summary or "",
        "excerpt": excerpt(entry.summary or ""),
        "upvotes": entry.upvotes or 0,
        "code_url": safe_url(entry.code_url),
    }


def digest_subject(day: date, papers: Sequence[PaperLike]) -> str:
    """The subject of a digest of these papers (in order) dated `day`: the mail's, the
    preview's and the web version's title."""
    top = paper_fields(papers[0])["title"] if papers else ""
    return subject_line(day, len(papers), top)


def pick_fields(pick: Pick) -> dict[str, Any]:
    """`paper_fields` of a picked paper, with the reason it was picked."""
    return {**paper_fields(pick.entry), "reason": pick.reason}


def _preheader(papers: Sequence[Mapping[str, Any]]) -> str:
    titles = [p["title"] for p in papers[:3]]
    text = " · ".join(titles)
    return text if len(text) <= 140 else text[:139].rsplit(" ", 1)[0] + "…"
