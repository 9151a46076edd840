"""Turning untrusted feed markup into clean one-line titles, plain text and email-safe HTML."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

# Tags a digest may show from a feed's abstract. Deliberately small: no images (tracking
# pixels), no tables, no style; nh3 drops scripts, iframes, forms and event handlers.
SAFE_TAGS = frozenset(
    {
        "a", "b", "blockquote", "br", "code", "em", "i", "li", "ol", "p", "pre",
        "strong", "sub", "sup", "u", "ul",
    }
)  # fmt: skip
SAFE_ATTRIBUTES = {"a": {"href", "title"}}
SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Dropped together with everything inside them (nh3 would keep their text otherwise).
DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "noscript", "object", "embed", "template", "svg", "math",
     "frame", "frameset", "noembed", "xmp", "select", "textarea"}
)  # fmt: skip

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5",
     "h6", "tr", "table", "section", "article", "header", "footer"}
)  # fmt: skip
_SKIP_CONTENT = frozenset({"script", "style", "template", "noscript", "iframe", "object"})
# Control characters, including the line and paragraph separators that break mail headers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")


class _TextExtractor(HTMLParser):
    # stdlib HTMLParser rather than regexes: it copes with broken markup, and nh3 has
    # no "to text" mode that keeps paragraph breaks.
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_CONTENT:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_CONTENT:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def one_line(text: str) -> str:
    """Whitespace and control characters collapsed to single spaces (safe for headers)."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def tidy_text(text: str) -> str:
    """Plain text with hard wraps joined and paragraphs kept (blank line between them)."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = re.split(r"\n\s*\n", text)
    return "\n\n".join(p for p in (one_line(p) for p in paragraphs) if p)


def html_to_text(markup: str) -> str:
    """The readable text of an HTML fragment, paragraphs kept, scripts and styles dropped."""
    # nh3 first: it parses like a browser (CDATA, comments, broken tags), drops scripts
    # and styles with their content, and keeps the block tags that mark paragraphs.
    markup = nh3.clean(
        markup,
        tags=set(SAFE_TAGS | _BLOCK_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={},
    )
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # HTMLParser is lenient; this is a last resort for pathological input
        return tidy_text(nh3.clean(markup, tags=set()))
    return tidy_text("".join(parser.parts))


def title_text(raw: str, *, is_html: bool) -> str:
    """A title on one line: markup stripped (when it is markup), entities decoded."""
    text = html_to_text(raw) if is_html else raw
    return one_line(text)


def sanitize_html(markup: str) -> str:
    """Email-safe HTML: only SAFE_TAGS, http(s)/mailto links, no scripts or handlers."""
    cleaned = nh3.clean(
        markup,
        tags=set(SAFE_TAGS),
        attributes={k: set(v) for k, v in SAFE_ATTRIBUTES.items()},
        url_schemes=set(SAFE_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        clean_content_tags=set(DROP_WITH_CONTENT),
    )
    return _CONTROL.sub(" ", cleaned).strip()


def clip_words(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else cut after its last whole word that
    fits (at the limit itself when one word is longer than half of it), ending in "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs, every character escaped."""
    return "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in text.split("\n\n") if p)
