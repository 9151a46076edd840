"""One path builds a digest's message for one subscriber: the mail (`sending`), `digestd
preview` and what "View in browser" shows (the reasons stored with the delivery).

- `build_digest`: a profile's papers rendered once (Jinja2, CSS inlined) into a message
  with holes for the subscriber's values (`mime.DigestTemplate`), with the reasons the
  papers carry, as the delivery stores them;
- `personal_links`: one subscriber's signed links and vote MACs for one period;
- `wire_message`: the message filled in, in SMTP wire form (the fast path), or None for
  what needs the email package (a non-ASCII address: `reference_message`);
- `message`: the same message as the email package reads it (what preview shows).

Votes fade to the window's end, never to "now" (`fade_instant`): a digest is the same
whenever it is built, so a retried digest equals its first attempt and its preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Protocol

from digestd.core.context import AppContext
from digestd.core.tokens import links, view_url, vote_macs
from digestd.delivery.deliveries.leases import Claim
from digestd.inbound import addresses
from digestd.mail.dkim import DkimSigner
from digestd.mail.mime import (
    DigestTemplate,
    Filled,
    SlotPart,
    build_digest_message,
    build_digest_template,
    format_date,
    from_wire,
)
from digestd.mail.render import Renderer, slot_values, vote_slots
from digestd.ranking.select import Pick, Profile

# The signed links each digest carries: "view" is completed with the period per message;
# "vote" is the token its vote links share.
LINK_PURPOSES = ("unsubscribe", "preferences", "view", "vote")


def fade_instant(claim: Claim) -> datetime:
    """The instant a digest's votes are faded to: its window's end (the rule, see above)."""
    return claim.window_end


class Recipient(Protocol):
    """What a message needs of a subscriber (an ORM row or a Core row of SEND_COLUMNS)."""

    @property
    def id(self) -> int | None: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def link_key(self) -> str: ...


@dataclass(frozen=True)
class Digest:
    """One rendered digest ready to send: its message with holes for the subscriber's values
    (built once, see mime.DigestTemplate), the reasons its papers carry (stored with the
    delivery), and what is needed to render it again for the rare subscriber the fast path
    declines (a non-ASCII address)."""

    template: DigestTemplate
    entry_ids: tuple[int, ...]
    vote_slots: tuple[str, ...]  # the vote-MAC slot names, in tokens.vote_macs order
    reasons: tuple[str, ...]  # per paper, in the order of entry_ids
    profile: Profile
    picks: tuple[Pick, ...]
    day: date  # the subscriber's local date, in the subject
    fmt: str


def build_digest(
    ctx: AppContext,
    renderer: Renderer,
    profile: Profile,
    picks: Sequence[Pick],
    day: date,
    fmt: str,
) -> Digest:
    """Render `picks` once for everyone who gets them (raises TemplateProblem)."""
    body = renderer.render_digest(profile, picks, day=day, fmt=fmt)
    template = build_digest_template(
        sender=ctx.settings.from_address,
        subject=body.subject,
        parts=[SlotPart(subtype, parts) for subtype, parts in body.slot_parts()],
        list_headers=addresses.list_headers(ctx.settings),
    )
    reasons = tuple(p.reason for p in picks if p.entry.id is not None)
    return Digest(
        template,
        body.entry_ids,
        vote_slots(body.entry_ids),
        reasons,
        profile,
        tuple(picks),
        day,
        fmt,
    )


@dataclass(frozen=True)
class PersonalLinks:
    """One subscriber's signed links in one digest, and the MACs of its vote links."""

    unsubscribe: str
    preferences: str
    view: str
    vote: str
    mailto: str  # the signed mailto: unsubscribe address ("" without DIGESTD_BOUNCE_ADDRESS)
    vote_macs: list[str]  # per paper: up, down (tokens.vote_macs order)


def personal_links(
    ctx: AppContext, sub: Recipient, period: str, entry_ids: tuple[int, ...]
) -> PersonalLinks:
    """The links and vote MACs `sub` gets in the digest of `period` carrying `entry_ids`."""
    s, secret = ctx.settings, ctx.secret_key
    assert sub.id is not None
    unsubscribe, preferences, view, vote = links(
        s.base_url, secret, LINK_PURPOSES, sub.id, sub.link_key
    )
    return PersonalLinks(
        unsubscribe=unsubscribe,
        preferences=preferences,
        view=view_url(view, period),
        vote=vote,
        mailto=addresses.unsubscribe_mailto(s, secret, sub.id, sub.link_key),
        vote_macs=vote_macs(secret, vote.rpartition("/")[2], entry_ids),
    )


def wire_message(
    digest: Digest,
    sub: Recipient,
    message_id: str,
    urls: PersonalLinks,
    date: str,
    signer: DkimSigner | None = None,
) -> bytes | None:
    """`digest` for `sub` in SMTP wire form (`date` from `mime.format_date`; DKIM-signed with
    a `signer`), or None when it needs `reference_message` (a non-ASCII address)."""
    filled = filled_message(digest, sub, message_id, urls, date)
    if filled is None or signer is None:
        return None if filled is None else filled.message
    return filled.signed(signer)


def filled_message(
    digest: Digest, sub: Recipient, message_id: str, urls: PersonalLinks, date: str
) -> Filled | None:
    """`wire_message` unsigned, with what its signature needs (`mime.Filled.unsigned`)."""
    return digest.template.filled(
        to_email=sub.email,
        to_name=sub.name or "",
        message_id=message_id,
        unsubscribe_url=urls.unsubscribe,
        date=date,
        values=slot_values(
            email=sub.email,
            unsubscribe_url=urls.unsubscribe,
            preferences_url=urls.preferences,
            view_url=urls.view,
            vote_url=urls.vote,
            vote_macs=dict(zip(digest.vote_slots, urls.vote_macs, strict=True)),
        ),
        mailto=urls.mailto,
    )


def reference_message(
    ctx: AppContext,
    renderer: Renderer,
    digest: Digest,
    sub: Recipient,
    message_id: str,
    urls: PersonalLinks,
    when: datetime,
) -> EmailMessage:
    """The message built by the email package from a fresh render: for what the fast path
    declines (a non-ASCII address needs SMTPUTF8, which `send_message` negotiates)."""
    d = digest
    body = renderer.render_digest(d.profile, list(d.picks), day=d.day, fmt=d.fmt)
    personal = renderer.personalize(
        body,
        email=sub.email,
        unsubscribe_url=urls.unsubscribe,
        preferences_url=urls.preferences,
        view_url=urls.view,
        vote_url=urls.vote,
        vote_macs=urls.vote_macs,
    )
    return build_digest_message(
        mailto=urls.mailto,
        list_headers=addresses.list_headers(ctx.settings),
        sender=ctx.settings.from_address,
        to_email=sub.email,
        to_name=sub.name or "",
        subject=personal.subject,
        text=personal.text,
        html=personal.html,
        message_id=message_id,
        unsubscribe_url=urls.unsubscribe,
        when=when,
    )


def message(
    ctx: AppContext,
    renderer: Renderer,
    digest: Digest,
    sub: Recipient,
    *,
    period: str,
    message_id: str,
    when: datetime,
) -> EmailMessage:
    """The message `sub` gets for `digest` at `when`, built as the sender builds it and read
    back by the email package (`digestd preview`)."""
    urls = personal_links(ctx, sub, period, digest.entry_ids)
    data = wire_message(digest, sub, message_id, urls, format_date(when))
    if data is None:
        return reference_message(ctx, renderer, digest, sub, message_id, urls, when)
    return message_from_bytes(from_wire(data), policy=email_policy.default)
