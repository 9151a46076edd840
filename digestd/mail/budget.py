"""A digest's HTML kept under Gmail's clipping size, whatever the preferences allow.

Gmail clips an HTML body above 102 KB and hides what follows behind "[Message clipped]",
the unsubscribe link included (at ~1.65 KB of HTML a paper, 61 or more papers did). The
budget is on what the subscriber's mail carries: the quoted-printable HTML part (what is
sent: an "=" becomes "=3D", long lines get soft breaks) with every per-subscriber slot at
its longest. Past the budget, the remaining papers are listed by title only, and past that
they are one line, "N more papers in your browser" (the view link). The header, the view
link and the footer (preferences and unsubscribe links) are part of every layout tried, so
they are always inside the budget. The text part is not cut: it carries every paper.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence

# Under Gmail's 102 KB (104,448 bytes), with room for what a relay may add to the part.
HTML_BUDGET_BYTES = 100_000
# The longest a slot's value can be once filled in (bytes of quoted-printable), beyond the
# base URL for links: a path and a signed token are ≈70 characters (tokens.links, a
# subscriber id of 12 digits, a view period), an address ≤ 254 (HTML-escaped), a MAC 16.
_LINK_EXTRA = 100
_EMAIL_MAX = 400
_MAC_MAX = 24

# A layout: how many papers in full, then how many by title only (the rest: "N more").
Layout = tuple[int, int]


def sent_size(html: str, marker: str, slots: Sequence[str], base_url: str) -> int:
    """The HTML part's size as sent, each slot (`render._split`'s names) filled with its
    longest value in place of its placeholder (`--MARKER-SLOT--`)."""
    qp = binascii.b2a_qp(html.encode("utf-8"), istext=True)
    encoded = len(qp) + qp.count(b"\n")  # lines end in CRLF as sent
    link = len(base_url) + _LINK_EXTRA
    for slot in slots:
        encoded -= len(marker) + len(slot) + 5
        if slot == "email":
            encoded += _EMAIL_MAX
        elif slot.endswith("_url"):
            encoded += link
        else:  # a vote MAC
            encoded += _MAC_MAX
    return encoded


def fit(count: int, render: Callable[[Layout], str], size: Callable[[str], int]) -> str:
    """The HTML of the layout with the most papers in full that fits the budget, the rest
    by title; when even all-titles does not fit, the most titles that do, the rest as
    "N more". One render when everything fits (the usual case); else a binary search
    (≈2·log2(count) renders, only for digests of some 60 papers or more)."""
    html = render((count, 0))
    if size(html) <= HTML_BUDGET_BYTES:
        return html

    def fits(layout: Layout) -> str | None:
        out = render(layout)
        return out if size(out) <= HTML_BUDGET_BYTES else None

    best = _largest(count - 1, lambda k: fits((k, count - k)))
    if best is not None:
        return best
    # Even the titles do not all fit (very long titles): as many as fit, then "N more".
    fallback = _largest(count, lambda t: fits((0, t)))
    return fallback if fallback is not None else render((0, 0))


def _largest(top: int, attempt: Callable[[int], str | None]) -> str | None:
    """The result of `attempt(n)` for the largest n in 0..top for which it is not None
    (it succeeds for every n below one that does: fewer papers never make it bigger)."""
    lo, hi, found = 0, top, None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = attempt(mid)
        if result is None:
            hi = mid - 1
        else:
            found, lo = result, mid + 1
    return found
