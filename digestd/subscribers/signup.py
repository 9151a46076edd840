"""Use cases of joining: a sign-up (web form, `subscribe` mail command), its confirmation,
an admin's `subscribers add`, and the per-address daily cap on mail that is not a digest.

Each function owns its transaction (`session_scope`); the entry points only call them.

Re-subscribing, in one place: a sign-up for an address we know changes nothing on it; it
records the request (preferences, time, client address) in the confirmation mail's event,
and only that mail's link applies it: a second sign-up cannot change a pending person's
preferences or name for the person's own link to confirm, and an unsubscribed address is
subscribed again only by a click from its mailbox. A suppressed address (bounced,
complained) gets no mail at all and the form answers as for anyone else.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.db import read_scope
from digestd.core.models import Event, Subscriber
from digestd.core.statuses import ConsentVia, MailKind, Move, SubscriberStatus
from digestd.subscribers import lifecycle, links, store
from digestd.subscribers.lifecycle import Change, Consent
from digestd.subscribers.links import LinkError, LinkPage
from digestd.subscribers.optin import MAILS_PER_ADDRESS_PER_DAY, ConfirmationMail
from digestd.subscribers.preferences import (
    PREFERENCE_FIELDS,
    InvalidInput,
    Preferences,
    normalize_email,
    preference_diff,
)
from digestd.subscribers.queries import subscriber_dict

S = SubscriberStatus
CONFIRMATION_SENT = "confirmation_sent"
CONFIRMATION_FAILED = "confirmation_failed"
# Statuses where the address is already in (a new sign-up only sends a "manage here" mail).
SUBSCRIBED = (S.ACTIVE, S.SUSPENDED)
DAY = timedelta(hours=24)


def request_subscription(
    ctx: AppContext,
    email: str,
    prefs: Preferences,
    *,
    via: ConsentVia,
    actor: str,
    ip: str | None = None,
    source: str = "",
    mails_per_day: int = MAILS_PER_ADDRESS_PER_DAY,
) -> ConfirmationMail | None:
    """Record a sign-up and say which mail to send (None: no mail may go there, or the
    address had its share of mail today). The caller answers the same way whatever this
    returns, so a response never tells whether an address was known."""
    for attempt in range(2):
        try:
            return _request(ctx, email, prefs, via, actor, ip, source, mails_per_day)
        except IntegrityError:
            # Two sign-ups for one new address raced on the unique email; the second
            # attempt finds the row the other one created.
            if attempt == 1:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _request(
    ctx: AppContext,
    email: str,
    prefs: Preferences,
    via: ConsentVia,
    actor: str,
    ip: str | None,
    source: str,
    mails_per_day: int,
) -> ConfirmationMail | None:
    now = ctx.now()
    email = normalize_email(email)
    consent = Consent(given_at=now, given_by=via, source=source or via.value, ip=ip)
    with store.transaction(ctx) as session:
        sub = store.by_email(session, email)
        known = sub is not None
        if sub is None:
            sub, added = lifecycle.new_subscriber(
                email, prefs, status=S.PENDING, now=now, consent=consent
            )
            store.add(session, sub, added, actor=actor, now=now)
        elif not lifecycle.may_mail(sub, MailKind.CONFIRMATION):
            return None
        # Concurrent requests for one address may both pass this count; the cap is for
        # abuse (a handful a day), so an occasional extra mail is acceptable.
        if store.mails_to(session, email, now - DAY) >= mails_per_day:
            return None
        kind = "already" if sub.status in SUBSCRIBED else "confirm"
        detail: dict[str, Any] = {"kind": kind}
        if kind == "confirm" and known:
            # What this sign-up asked for, applied only by this mail's own link.
            detail["request"] = {**prefs.as_dict(), "via": via.value, "ip": ip, "source": source}
        event = store.record(session, sub, Change(CONFIRMATION_SENT, detail), actor=actor, now=now)
        store.mail_sent(session, email, MailKind.CONFIRMATION.value, now)
        session.flush()
        assert sub.id is not None and event.id is not None
        key, base = ctx.secret_key, ctx.settings.base_url
        if kind == "confirm":
            extra = (event.id,) if known else ()
            url = tokens.subscriber_link(base, key, "confirm", sub, *extra)
            return ConfirmationMail(kind=kind, to=sub.email, subscriber_id=sub.id, confirm_url=url)
        return ConfirmationMail(
            kind=kind,
            to=sub.email,
            subscriber_id=sub.id,
            preferences_url=tokens.subscriber_link(base, key, "preferences", sub),
            unsubscribe_url=tokens.subscriber_link(base, key, "unsubscribe", sub),
        )


def may_reply(
    ctx: AppContext, address: str, *, mails_per_day: int = MAILS_PER_ADDRESS_PER_DAY
) -> bool:
    """Whether a reply to a mail command may go to this address: it is not suppressed, and
    it had fewer than `mails_per_day` confirmations and replies in 24 hours. One cap for
    both, so a forger gets no more mail to anyone by mixing commands and sign-ups."""
    now = ctx.now()
    with read_scope(ctx.engine) as session:
        sub = store.by_email(session, normalize_email(address))
        if sub is not None and not lifecycle.may_mail(sub, MailKind.REPLY):
            return False
        return store.mails_to(session, normalize_email(address), now - DAY) < mails_per_day


def reply_sent(ctx: AppContext, address: str) -> None:
    """Count a reply to a mail command against the address's daily cap."""
    with store.transaction(ctx) as session:
        store.mail_sent(session, normalize_email(address), MailKind.REPLY.value, ctx.now())


def confirmation_failed(ctx: AppContext, subscriber_id: int, *, actor: str) -> None:
    """Note that a confirmation mail could not be handed to the SMTP server."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub = store.get(session, subscriber_id)
        if sub is not None:
            store.record(session, sub, Change(CONFIRMATION_FAILED, {}), actor=actor, now=now)


ENDED = "This confirmation link belongs to a subscription that has ended. Please subscribe again."


def _sign_up_request(
    session: Session, sub: Subscriber, claims: tokens.TokenClaims
) -> tuple[dict[str, Any] | None, Event | None]:
    """The sign-up a confirmation link was mailed for (its request and event), if recorded."""
    if not claims.extra or sub.id is None:
        return None, None
    event = store.event_of(session, sub.id, claims.extra[0], CONFIRMATION_SENT)
    request = (event.detail or {}).get("request") if event is not None else None
    return request or None, event


def confirmation_page(ctx: AppContext, token: str) -> LinkPage:
    """What a confirmation link's page shows, changing nothing (mail scanners follow links):
    the subscriber, or the LinkError its button would meet (tampered, expired, ended)."""
    now = ctx.now()
    with read_scope(ctx.engine) as session:
        sub, claims = links.resolve_with_claims(session, ctx.secret_key, "confirm", token, now)
        if sub.status not in SUBSCRIBED:
            request, _ = _sign_up_request(session, sub, claims)
            reopens = sub.status == S.UNSUBSCRIBED and bool(request)
            move = Move.SUBSCRIBE if reopens else Move.CONFIRM
            if not lifecycle.allowed(sub, move):
                raise LinkError(410, ENDED)
        return links.page_of(session, ctx.secret_key, sub)


def confirm_by_link(ctx: AppContext, token: str, *, actor: str) -> LinkPage:
    """The person pressed the button behind the link in their confirmation mail: apply what
    that sign-up asked for and make the address active (an active one just sees its page)."""
    now = ctx.now()
    with store.transaction(ctx) as session:
        sub, claims = links.resolve_with_claims(session, ctx.secret_key, "confirm", token, now)
        if sub.status in SUBSCRIBED:
            return links.page_of(session, ctx.secret_key, sub)
        changes: list[Change | None] = []
        request, event = _sign_up_request(session, sub, claims)
        try:
            if request:
                changes.append(_apply_request(sub, request, now))
                consent = Consent(
                    given_at=event.created_at if event is not None else now,
                    given_by=ConsentVia(request.get("via") or ConsentVia.WEB),
                    source=str(request.get("source") or ""),
                    ip=request.get("ip"),
                )
            else:
                consent = _consent_of(sub, now)
            if sub.status == S.UNSUBSCRIBED:
                if not request:  # only a sign-up made since the unsubscribe reopens it
                    raise lifecycle.refusal(sub, "confirm")
                changes.append(
                    lifecycle.subscribe(sub, consent=consent, reason="confirmed by link")
                )
            changes.append(lifecycle.confirm(sub, now=now, reason="confirmed by link"))
        except lifecycle.TransitionError:
            raise LinkError(410, ENDED) from None
        changed = store.save(session, sub, changes, actor=actor, now=now)
        return links.page_of(session, ctx.secret_key, sub, changed)


def _apply_request(sub: Subscriber, request: dict[str, Any], now: Any) -> Change | None:
    wanted = Preferences(**{k: request[k] for k in PREFERENCE_FIELDS if k in request})
    wanted = wanted.validated()
    diff = preference_diff(sub, wanted)
    for name, (_, new) in diff.items():
        setattr(sub, name, new)
    return Change(lifecycle.UPDATED, {"changes": diff, "via": "confirmation"}) if diff else None


def _consent_of(sub: Subscriber, now: Any) -> Consent:
    """The consent already on record (a new address's own sign-up), or one given now."""
    if sub.consent_given_at is not None and sub.consent_given_by is not None:
        return Consent(
            sub.consent_given_at, sub.consent_given_by, sub.consent_source, sub.consent_ip
        )
    return Consent(given_at=now, given_by=ConsentVia.WEB)


def add_by_admin(
    ctx: AppContext, email: str, changes: dict[str, Any], *, confirmed: bool
) -> tuple[str, dict[str, Any]]:
    """`digestd subscribers add`: a new address (pending, or active with `confirmed`), or an
    unsubscribed one subscribed again with `confirmed` (the person agreed again). Returns
    ("added" or "re-subscribed", the subscriber's public view); InvalidInput otherwise."""
    now = ctx.now()
    actor = ctx.actor
    email = normalize_email(email)
    prefs = replace(Preferences(), **changes).validated()
    consent = Consent(given_at=now, given_by=ConsentVia.ADMIN, source=actor)
    with store.transaction(ctx) as session:
        sub = store.by_email(session, email)
        if sub is None:
            status = S.ACTIVE if confirmed else S.PENDING
            sub, added = lifecycle.new_subscriber(
                email, prefs, status=status, now=now, consent=consent
            )
            store.add(session, sub, added, actor=actor, now=now)
            return "added", subscriber_dict(sub)
        if sub.status == S.BOUNCED:
            raise lifecycle.refusal(sub, "subscribe")
        if sub.status != S.UNSUBSCRIBED:
            raise InvalidInput(
                f"{sub.email} already exists (status {sub.status}); "
                "use `digestd subscribers update` to change it"
            )
        if not confirmed:
            # Never switch an unsubscribed address back on by accident.
            raise InvalidInput(
                f"{sub.email} is {sub.status}; add --confirmed to subscribe it again "
                "(only with the person's consent)"
            )
        wanted = replace(Preferences.of(sub), **changes).validated()
        diff = preference_diff(sub, wanted)
        for name, (_, new) in diff.items():
            setattr(sub, name, new)
        steps: list[Change | None] = [
            Change(lifecycle.UPDATED, {"changes": diff}) if diff else None,
            # A suppressed (complained) address is refused here: only `lift` reopens it.
            lifecycle.subscribe(sub, consent=consent, reason="re-added"),
            lifecycle.confirm(sub, now=now, reason="re-added"),
        ]
        store.save(session, sub, steps, actor=actor, now=now)
        return "re-subscribed", subscriber_dict(sub)
