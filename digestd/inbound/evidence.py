"""Evidence before action: what ties a returned message to a message we sent, and to whom.

A bounce or a complaint changes a subscriber only when it is tied to a message we sent
*them*. The kinds of evidence (the `evidence` of the record and of `inbound list --json`):

- "verp": the report came to the VERP envelope sender of one delivery, a token we signed
  for that delivery. It concerns that delivery's subscriber and no one else, whatever
  address the report names (a forwarded address, or someone else's: never touched).
- "message-id": the report carries (in the returned headers, In-Reply-To/References, or a
  feedback report's original message) the Message-ID of one of our deliveries, and it is
  about that delivery's address: the report names it, or the returned copy's To does (a
  forwarded address failed); a complaint may also name no other subscriber of ours
  (feedback loops redact the address). It concerns that delivery's subscriber only. Our
  Message-IDs carry 48 random bits: only who saw the message knows one.
- "mailto-token": mail to a subscriber's signed List-Unsubscribe address (unsubscribe only).
- "provider": a provider's event whose signature was verified (webhooks), naming one of our
  Message-IDs (then "message-id") or a recipient we sent to.

Anything else (an address alone, a token we did not sign) is not evidence: the message is
recorded with its kind and addresses, and nothing changes. A token that does not verify
is refused outright, even if the content names a delivery: someone forged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from digestd.core.models import Subscriber
from digestd.delivery import deliveries
from digestd.inbound import addresses
from digestd.inbound.reading import Reading, RecipientReport
from digestd.subscribers import queries as subscribers
from digestd.subscribers.preferences import InvalidInput

VERP, MESSAGE_ID, MAILTO, PROVIDER = "verp", "message-id", "mailto-token", "provider"
KINDS = (VERP, MESSAGE_ID, MAILTO, PROVIDER)
# Kinds of inbound mail that can change a subscriber, and so need evidence.
ACTING_KINDS = ("bounce", "complaint", "unsubscribe")
NO_EVIDENCE = "no evidence"
MAX_NAMED_CHECKED = 3  # addresses of a complaint looked up (is it another subscriber's?)


@dataclass(frozen=True)
class Claims:
    """What the transport vouches for; the evidence is worked out from it and the reading.

    `addresses`: our addresses the message came to (envelope recipients, or the headers
    when there is no envelope), with the tokens in them; `provider`: the name of a provider
    whose signature on the event was checked (a webhook), or "".
    """

    addresses: tuple[addresses.OurAddress, ...] = ()
    provider: str = ""

    @property
    def roles(self) -> set[str]:
        """verp, unsubscribe, request, bounce: which of our addresses it came to."""
        return {a.role for a in self.addresses}


@dataclass
class Finding:
    """The evidence found (its `kind` is "" when there is none) and whom it concerns."""

    kind: str = ""
    subscriber: Subscriber | None = None
    delivery: deliveries.DeliveryRow | None = None
    report: RecipientReport | None = None
    refused: str = ""  # why nothing may change although something was claimed


def find(session: Session, secret_key: str, reading: Reading, claims: Claims) -> Finding:
    """The evidence for this reading, or a Finding with no kind (see the module)."""
    tokens = [a for a in claims.addresses if a.role in ("verp", "unsubscribe") or a.tampered]
    if tokens:
        found = _from_tokens(session, secret_key, reading, tokens)
        if found.kind or found.refused:
            return found
    found = _from_message_ids(session, reading)
    if found.kind or not claims.provider:
        return found
    return _from_provider(session, reading)


def _from_tokens(
    session: Session,
    secret_key: str,
    reading: Reading,
    tokens: Sequence[addresses.OurAddress],
) -> Finding:
    for token in tokens:
        if token.role == "verp" and addresses.verify_delivery(secret_key, token):
            assert token.ident is not None
            ref = deliveries.get(session, token.ident)
            if ref is None:
                return Finding(refused="its delivery no longer exists: nothing changed")
            sub = subscribers.get(session, ref.subscriber_id)
            return Finding(VERP, sub, ref, _report_for_verp(reading, sub))
        if token.role == "unsubscribe" and token.ident is not None:
            sub = subscribers.get(session, token.ident)
            signed = sub is not None and addresses.verify_subscriber(
                secret_key, token, sub.link_key, sub.token_version
            )
            if signed:
                if reading.kind in ("bounce", "complaint"):
                    # The mailto: address is printed in every digest: it proves someone
                    # saw one, which is enough to unsubscribe but not to bounce or suppress.
                    return Finding()
                return Finding(MAILTO, sub, None, None)
    return Finding(refused="token not valid (tampered or revoked): nothing changed")


def _report_for_verp(reading: Reading, sub: Subscriber | None) -> RecipientReport | None:
    """The report about the VERP's subscriber; else the first failure (a forwarded address):
    the token says the message to them came back, whatever address the report names."""
    if not reading.recipients:
        return None
    if sub is not None:
        for r in reading.recipients:
            if r.names(sub.email):
                return r
    failed = [r for r in reading.recipients if r.action == "failed"]
    return (failed or reading.recipients)[0]


def _from_message_ids(session: Session, reading: Reading) -> Finding:
    refused = ""
    for message_id in reading.message_ids:
        ref = deliveries.find_by_message_id(session, message_id)
        if ref is None:
            continue
        sub = subscribers.get(session, ref.subscriber_id)
        if sub is None:
            continue
        if reading.kind == "auto_reply":
            return Finding(MESSAGE_ID, sub, ref, None)  # nothing to change: a link only
        report = next((r for r in reading.recipients if r.names(sub.email)), None)
        if report is not None:
            return Finding(MESSAGE_ID, sub, ref, report)
        if _returned_to(reading, sub.email):
            # The returned copy went to them (a forwarded address failed): like VERP.
            return Finding(MESSAGE_ID, sub, ref, _report_for_verp(reading, sub))
        if reading.kind == "complaint" and not _names_another(session, reading, sub):
            return Finding(MESSAGE_ID, sub, ref, None)
        refused = "our Message-ID, but of a delivery to another address"
    return Finding(refused=f"{NO_EVIDENCE} ({refused}): nothing changed" if refused else "")


def _returned_to(reading: Reading, email: str) -> bool:
    """Whether the returned copy's To names this address."""
    wanted = email.strip().lower()
    return any(a.lower() == wanted for a in addresses.addresses_in(reading.original_to[:5]))


def _names_another(session: Session, reading: Reading, sub: Subscriber) -> bool:
    """Whether a complaint names one of our other subscribers (rather than a redacted or
    rewritten address, as feedback loops send)."""
    for r in reading.recipients[:MAX_NAMED_CHECKED]:
        try:
            other = subscribers.by_email(session, r.address)
        except InvalidInput:
            continue
        if other is not None and other.id != sub.id:
            return True
    return False


def _from_provider(session: Session, reading: Reading) -> Finding:
    """A verified provider event without one of our Message-IDs: a recipient we sent to."""
    for r in reading.recipients:
        try:
            sub = subscribers.by_email(session, r.address)
        except InvalidInput:
            continue
        if sub is None or sub.id is None:
            continue
        sent = deliveries.latest_sent(session, sub.id)
        if sent is not None:
            return Finding(PROVIDER, sub, sent, r)
    return Finding()
