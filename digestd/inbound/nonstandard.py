"""Bounces that are not RFC 3464 DSNs: flufl.bounce's detectors, then a generic reading.

flufl.bounce (Mailman's detectors) finds the failed addresses of the many non-standard
formats; no library reads a plain-text bounce it does not know, so `read_generic` is ours:
a DSN whose MIME is broken (its fields read from the text), or the returned message's
recipient and the lines that follow a failed address.
"""

from __future__ import annotations

import re

from digestd.core.failures import Failure, Severity
from digestd.inbound.addresses import addresses_in
from digestd.inbound.dsn import plausible, read_dsn
from digestd.inbound.message import Mail, blocks_from_text
from digestd.inbound.parse import one_line
from digestd.inbound.reading import MAX_RECIPIENTS, Reading, RecipientReport
from digestd.mail.reasons import read_failure

_DELAY = re.compile(
    r"delayed|will (be )?retr|warning|still trying|not yet been delivered|will keep trying",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_NOT_RECIPIENT = re.compile(r"^(postmaster|mailer-daemon|root|abuse|no-?reply)@", re.IGNORECASE)
_DSN_FIELDS = re.compile(r"^(final-recipient|original-recipient|reporting-mta):", re.I | re.M)
MAX_GENERIC = 10  # addresses taken from the text of a bounce no detector knows


def _near(text: str, lowered: str, address: str) -> str:
    """The lines of a bounce about a failed address: from the start of its line (some say
    "Unknown user: <address>") to what follows it, its diagnostic as far as there is one
    (`lowered` is `text` in lower case, made once per message)."""
    at = lowered.find(address.lower())
    if at < 0:
        return text[:1500]
    start = text.rfind("\n", max(0, at - 200), at) + 1
    return text[start : at + 800]


def _failure(address: str, near: str, whole: str, subject: str, action: str) -> Failure:
    """What the lines about an address say; when they name no reason, the whole text."""
    if address.lower().endswith("@googlegroups.com") and "groups.google.com" in whole:
        # Google Groups' answer, in the poster's language: the group does not take our post
        # (it may not exist, or we may not post to it). Sisimai reads it the same way.
        return Failure(Severity.SENDER, "rejected")
    words = f"{near} {subject}" if action == "failed" else near
    failure = read_failure("", words, action, context=whole)
    if failure.reason == "undefined" and whole and action == "failed":
        failure = read_failure("", f"{whole[:4000]} {subject}", action, context=whole)
    return failure


def flufl_failures(mail: Mail) -> tuple[list[str], list[str]]:
    """flufl.bounce's (temporary, permanent) addresses that look like addresses, sorted."""
    temporary, permanent = mail.flufl
    return sorted(filter(plausible, temporary)), sorted(filter(plausible, permanent))


def read_flufl(mail: Mail, temporary: list[str], permanent: list[str]) -> Reading:
    """A bounce flufl.bounce recognised: each address with the text that follows it."""
    subject = mail.header("Subject")
    recipients = []
    gone = set(permanent)
    named = [(a, "failed") for a in permanent]
    named += [(a, "delayed") for a in temporary if a not in gone]
    for address, action in named[:MAX_RECIPIENTS]:
        near = one_line(_near(mail.report_text, mail.report_text_lower, address), 800)
        failure = _failure(address, near, mail.report_text, subject, action)
        recipients.append(RecipientReport(address, action, failure.status, near, failure))
    return Reading(
        kind="bounce",
        recipients=recipients,
        original_message_id=mail.returned.message_id or mail.message_id_in_text,
        original_to=list(mail.returned.to),
        detector="flufl.bounce",
        more_recipients=max(0, len(named) - MAX_RECIPIENTS),
    )


def read_generic(mail: Mail) -> Reading:
    """A mail system's report that no detector above knows (see the module)."""
    whole = mail.whole_text
    found = _DSN_FIELDS.search(whole)
    if found:
        reading = read_dsn(mail, blocks_from_text(whole[found.start() :]), mail.report_text)
        if reading is not None:
            reading.detector = "dsn-text"
            return reading
    text = mail.report_text or (mail.text(mail.parts[0]) if mail.parts else "")
    lowered = text.lower()
    subject = mail.header("Subject")
    returned = mail.returned
    own = {a.lower() for a in addresses_in([mail.header("From"), mail.header("To")])}
    in_text: list[str] = []
    seen: set[str] = set()
    for match in _ADDRESS.finditer(text):
        address = match.group(0).strip(".")
        key = address.lower()
        if key in own or key in seen or _NOT_RECIPIENT.match(address):
            continue
        if plausible(address):
            in_text.append(address)
            seen.add(key)
        if len(in_text) >= MAX_GENERIC:
            break
    chosen = in_text or addresses_in(list(returned.to))[:MAX_GENERIC]
    if not chosen:
        return Reading(kind="", note="looks like a bounce, but names no recipient")
    action = "delayed" if _DELAY.search(subject) else "failed"
    recipients = []
    for address in chosen:
        near = one_line(_near(text, lowered, address), 800)
        failure = _failure(address, near, text, subject, action)
        recipients.append(RecipientReport(address, action, failure.status, near, failure))
    return Reading(
        kind="bounce",
        recipients=recipients,
        original_message_id=returned.message_id or mail.message_id_in_text,
        original_to=list(returned.to),
        detector="generic",
        more_recipients=0,
    )
