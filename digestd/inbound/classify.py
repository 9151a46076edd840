"""Telling inbound mail apart: DSN, non-standard bounce, ARF complaint, auto-reply, the rest.

Order matters and is deliberate:
1. an ARF report (RFC 5965) is a complaint;
2. an RFC 3464 DSN is read recipient by recipient (failed / delayed / delivered);
3. an RFC 3834 auto-reply (Auto-Submitted, X-Autoreply, vacation subjects) is never a bounce;
4. the many non-standard bounces are left to flufl.bounce (Mailman's detectors);
5. what is left is a person's mail (unsubscribe, command) or unrecognized: routing decides.
"""

from __future__ import annotations

import email
import json
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from flufl.bounce import all_failures

from digestd.inbound.addresses import addresses_in
from digestd.inbound.parse import Parsed, decode, header_text, one_line, text_of, walk
from digestd.subscribers.bounce_policy import Failure, read_failure, status_in

SUCCESS_ACTIONS = ("delivered", "relayed", "expanded")
# Non-standard Action values seen in the wild.
_ACTIONS = {"failure": "failed", "error": "failed", "fail": "failed", "delay": "delayed"}
_DAEMON = re.compile(
    r"mailer-daemon|postmaster|mail ?delivery|mail administrator|mail system|"
    r"bounce|daemon|no-?reply|mailer@|nobody@",
    re.IGNORECASE,
)
_VACATION_SUBJECT = re.compile(
    r"out of (the )?office|vacation|auto(matic)?[- ]?(reply|response|antwort)|autoreply|"
    r"abwesenheit|away from (the )?office|absence|on leave|réponse automatique|"
    r"respuesta automática|risposta automatica|automatisch",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|failed|problem|has failed|notification)|returned mail|"
    r"failure notice|mail delivery|could not be delivered|non-?delivery|returned to sender|"
    r"permanent error|unable to deliver|not delivered|mail failure|delivery error|"
    r"error sending|unzustellbar|fehlgeschlagen|bounce|rejected",
    re.IGNORECASE,
)
_DELAY = re.compile(
    r"delayed|will (be )?retr|warning|still trying|not yet been delivered|will keep trying",
    re.IGNORECASE,
)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_NOT_RECIPIENT = re.compile(r"^(postmaster|mailer-daemon|root|abuse|no-?reply)@", re.IGNORECASE)
_DSN_FIELDS = re.compile(r"^(final-recipient|original-recipient|reporting-mta):", re.I | re.M)
_COMPLAINT_SUBJECT = re.compile(r"complaint about message|abuse report|spam report", re.I)
_MSGID = re.compile(r"^message-id:\s*(<[^>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class RecipientReport:
    """One recipient of a report: the address and what happened to it."""

    address: str
    action: str = "failed"  # failed | delayed | delivered | relayed | expanded
    status: str = ""
    diagnostic: str = ""
    failure: Failure = field(default_factory=lambda: Failure("none", ""))
    final: str = ""  # Final-Recipient, when a DSN names an Original-Recipient too

    def as_json(self) -> dict[str, Any]:
        """The `recipients` object of the `digestd inbound --json` contract."""
        return {
            "address": self.address,
            "status": self.status or self.failure.status,
            "action": self.action,
            "hard": self.failure.hard,
            "reason": self.failure.reason,
        }


@dataclass
class Reading:
    """What a message is, before routing and policy."""

    kind: str  # bounce | complaint | auto_reply | delivery_report | "" (a person's mail)
    recipients: list[RecipientReport] = field(default_factory=list)
    original_message_id: str = ""
    original_to: list[str] = field(default_factory=list)
    feedback_type: str = ""
    detector: str = ""
    note: str = ""


def _is_type(part: Message, *types: str) -> bool:
    try:
        return part.get_content_type() in types
    except Exception:
        return False


def _strip_type(value: str) -> str:
    """`rfc822; <a@b>` → `a@b`."""
    value = value.split(";", 1)[1] if ";" in value else value
    return value.strip().strip("<>").strip()


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                blocks.append({k.lower(): one_line(decode(v)) for k, v in sub.items()})
        # Some MTAs put the whole report in one block's body: read it too.
        if len(blocks) == 1 and isinstance(payload[0], Message):
            body = payload[0].get_payload()
            if isinstance(body, str) and ":" in body:
                blocks.extend(_blocks_from_text(body))
        return blocks
    if isinstance(payload, str):
        text = payload
        if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
            text = text_of(part)
        return _blocks_from_text(text)
    return blocks


def _blocks_from_text(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text[:65536]):
        try:
            msg = email.message_from_string(chunk.strip() + "\n\n")
        except Exception:
            continue
        block = {k.lower(): one_line(decode(v)) for k, v in msg.items()}
        if block:
            blocks.append(block)
    return blocks


def _original(message: Message) -> tuple[str, list[str]]:
    """Message-ID and To of the returned original (message/rfc822 or text/rfc822-headers)."""
    for part in walk(message):
        if part is message:
            continue
        inner: Message | None = None
        if _is_type(part, "message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                inner = payload[0]
        elif _is_type(part, "text/rfc822-headers", "message/rfc822-headers"):
            try:
                inner = email.message_from_string(text_of(part) or str(part.get_payload()))
            except Exception:
                inner = None
        if inner is not None:
            mid = header_text(inner, "Message-ID")
            to = [header_text(inner, "To")] if inner.get("To") else []
            if mid or to:
                return mid.strip(), to
    return _original_inline(message)


def _original_inline(message: Message) -> tuple[str, list[str]]:
    """The same, from a copy pasted into the text after a marker ("Unsent message follows")."""
    for part in walk(message):
        if not _is_type(part, "text/plain"):
            continue
        text = text_of(part)
        marker = _RETURNED.search(text)
        if marker is None:
            return "", []
        rest = (
            text[marker.end() :]
            if not marker.group(0).lower().startswith(("return-path", "received", "dkim", "x-"))
            else text[marker.start() :]
        )
        try:
            inner = email.message_from_string(rest.lstrip("\r\n"))
        except Exception:
            return "", []
        mid = header_text(inner, "Message-ID")
        to = [header_text(inner, "To")] if inner.get("To") else []
        return mid.strip(), to
    return "", []


def _message_id_in_text(message: Message) -> str:
    """A Message-ID quoted in the text of a non-standard bounce (after its own headers)."""
    for part in walk(message):
        if _is_type(part, "text/plain"):
            match = _MSGID.search(text_of(part))
            if match:
                return match.group(1)
    return ""


def _read_arf(message: Message, report: Message | None) -> Reading:
    fields: dict[str, str] = {}
    for block in _field_blocks(report) if report is not None else []:
        fields.update({k: v for k, v in block.items() if k not in fields})
    mid, to = _original(message)
    rcpts = [_strip_type(fields["original-rcpt-to"])] if fields.get("original-rcpt-to") else []
    rcpts = rcpts or addresses_in(to)
    return Reading(
        kind="complaint",
        recipients=[
            RecipientReport(a, action="", failure=Failure("none", "feedback")) for a in rcpts
        ],
        original_message_id=mid,
        original_to=to,
        feedback_type=fields.get("feedback-type", "abuse").lower()[:32],
        detector="arf",
    )


def _read_dsn(message: Message, blocks: list[dict[str, str]]) -> Reading | None:
    recipients: list[RecipientReport] = []
    for block in blocks:
        # The original recipient is the address we sent to (the final one may be a
        # forwarding target or an internal name like userx@sims-ms-daemon).
        original = _strip_type(block.get("original-recipient", ""))
        address = original if "@" in original else block.get("final-recipient", "")
        if not address and "action" not in block:
            continue
        action = block.get("action", "").split()[0].lower() if block.get("action") else ""
        action = _ACTIONS.get(action, action)
        status = status_in(block.get("status", ""))
        diagnostic = (
            _strip_type(block.get("diagnostic-code", "")) if block.get("diagnostic-code") else ""
        )
        final = _strip_type(block.get("final-recipient", ""))
        recipients.append(
            RecipientReport(
                final=final,
                address=_strip_type(address or ""),
                action=action or ("failed" if status.startswith("5") else "delayed"),
                status=status,
                diagnostic=diagnostic,
            )
        )
    recipients = [r for r in recipients if _plausible(r.address) or (not r.address and r.status)]
    if not recipients:
        return None
    for r in recipients:
        text = r.diagnostic
        if not text and r.action not in SUCCESS_ACTIONS:
            text = _human_text(message)
        r.failure = read_failure(r.status, text, r.action)
    mid, to = _original(message)
    if not recipients[0].address and to:
        for r, a in zip(recipients, addresses_in(to), strict=False):
            r.address = r.address or a
    for r in recipients:
        if r.action not in (*SUCCESS_ACTIONS, "failed", "delayed") and r.status.startswith("2"):
            r.action = "delivered"  # e.g. "deliverable" (an address check): not a failure
            r.failure = read_failure(r.status, "", r.action)
    success = all(r.action in SUCCESS_ACTIONS for r in recipients)
    return Reading(
        kind="delivery_report" if success else "bounce",
        recipients=recipients,
        original_message_id=mid or _message_id_in_text(message),
        original_to=to,
        detector="dsn",
    )


_RETURNED = re.compile(
    r"^.*(copy of (the|your) (original )?message|original message (follows|headers)|"
    r"returned message|below this line|message headers? follows?|unsent message below|"
    r"bounced e-?mail|^from \S+@\S+ +\w{3} \w{3}|"
    r"^(return-path|received|dkim-signature|x-[a-z-]+):).*$",
    re.IGNORECASE | re.MULTILINE,
)


def _plausible(address: str) -> bool:
    """An address worth reporting ('david...@gmail.com', an X.400 path: no)."""
    local, _, domain = address.rpartition("@")
    return bool(local and "." in domain and ".." not in local and not local.endswith("."))


def _human_text(message: Message) -> str:
    """The human-readable half of a report: its first text part, without the returned copy
    of our message (whose headers would otherwise read as the diagnostic)."""
    for part in walk(message):
        if _is_type(part, "text/plain", "text/html"):
            text = text_of(part)
            cut = _RETURNED.search(text)
            return (text[: cut.start()] if cut else text)[:4000]
    return ""


def _ses_notification(message: Message) -> Reading | None:
    """An Amazon SES notification (bounce, complaint, delivery) forwarded by mail as JSON
    (SNS email subscriptions). SNS folds long lines as "!" + newline + space: undone here."""
    text = _human_text(message) or ""
    start = text.find("{")
    if start < 0 or ('"notificationType"' not in text and '"eventType"' not in text):
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(re.sub(r"!\r?\n ", "", text[start:]))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Message"), str):  # the SNS envelope around the SES JSON
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    mid = ""
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            mid = str(header.get("value", ""))
    to = [str(a) for a in mail.get("destination") or []]
    if kind == "complaint":
        body = data.get("complaint") or {}
        who = [str(r.get("emailAddress", "")) for r in body.get("complainedRecipients") or []]
        return Reading(
            kind="complaint",
            recipients=[RecipientReport(a, "", failure=Failure("none", "feedback")) for a in who],
            original_message_id=mid,
            original_to=to,
            feedback_type=str(body.get("complaintFeedbackType") or "abuse")[:32],
            detector="ses",
        )
    if kind not in ("bounce", "delivery"):
        return None
    body = data.get(kind) or {}
    recipients = []
    if kind == "delivery":
        for address in body.get("recipients") or []:
            recipients.append(
                RecipientReport(
                    str(address), "delivered", failure=read_failure("", "", "delivered")
                )
            )
    for r in body.get("bouncedRecipients") or []:
        action = (
            "delayed"
            if body.get("bounceType") == "Transient" and not r.get("status", "").startswith("5")
            else "failed"
        )
        status = status_in(str(r.get("status", "")))
        diagnostic = one_line(str(r.get("diagnosticCode", "")), 800)
        recipients.append(
            RecipientReport(
                str(r.get("emailAddress", "")),
                action,
                status,
                diagnostic,
                read_failure(status, diagnostic, action),
            )
        )
    if not recipients:
        return None
    return Reading(
        kind="bounce" if kind == "bounce" else "delivery_report",
        recipients=recipients,
        original_message_id=mid,
        original_to=to,
        detector="ses",
    )


def is_auto_reply(parsed: Parsed) -> bool:
    """RFC 3834 and the common non-standard markers of an automatic reply."""
    auto = parsed.header("Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if parsed.header("X-Autoreply") or parsed.header("X-Autorespond"):
        return True
    if parsed.header("X-Auto-Response-Suppress") and parsed.header("X-Autoreply"):
        return True
    precedence = parsed.header("Precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    return bool(_VACATION_SUBJECT.search(parsed.header("Subject")))


def looks_like_daemon(parsed: Parsed, mail_from: str | None) -> bool:
    """Sent by a mail system (null sender, MAILER-DAEMON, postmaster…) rather than a person."""
    if mail_from is not None and mail_from.strip("<> ") == "":
        return True
    return bool(_DAEMON.search(parsed.header("From")))


def _flufl(message: Message) -> tuple[set[str], set[str]]:
    # flufl.bounce logs a traceback for a detector that chokes, then re-raises: the
    # exception is handled here, so its log line would only be noise (or look like a crash).
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on hostile input: no verdict, not a crash
        return set(), set()
    dec = lambda s: {  # noqa: E731
        (a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)).strip("<> ") for a in s
    }
    return dec(temporary), dec(permanent)


def _near(text: str, address: str) -> str:
    """The lines of a bounce after a failed address: its diagnostic, as far as there is one."""
    at = text.lower().find(address.lower())
    if at < 0:
        return text[:1500]
    return text[at : at + 800]


def classify(parsed: Parsed, *, mail_from: str | None, person_mail: bool) -> Reading:
    """Read a parsed message; `person_mail`: it went to an address people write to."""
    message = parsed.message
    if message is None:
        return Reading(kind="")
    for part in walk(message):
        if _is_type(part, "message/feedback-report"):
            return _read_arf(message, part)
    for part in walk(message):
        if _is_type(part, "message/delivery-status", "message/global-delivery-status"):
            reading = _read_dsn(message, _field_blocks(part))
            if reading is not None:
                return reading
    ses = _ses_notification(message)
    if ses is not None:
        return ses
    daemon = looks_like_daemon(parsed, mail_from)
    subject = parsed.header("Subject")
    if _COMPLAINT_SUBJECT.search(subject) and _original(message)[1]:
        # Feedback loops that predate ARF (e.g. Hotmail's): the complained-of message attached.
        return _read_arf(message, None)
    bouncy = daemon and bool(_BOUNCE_SUBJECT.search(subject))
    if is_auto_reply(parsed) and not bouncy and not (daemon and any(_flufl(message))):
        return Reading(
            kind="auto_reply",
            original_message_id=parsed.header("In-Reply-To")[:255],
            detector="rfc3834",
        )
    if person_mail and not daemon:
        return Reading(kind="")
    temporary, permanent = (set(filter(_plausible, found)) for found in _flufl(message))
    if temporary or permanent:
        return _from_flufl(parsed, message, temporary, permanent)
    if daemon or _BOUNCE_SUBJECT.search(subject):
        return _generic_bounce(parsed, message)
    return Reading(kind="")


def _from_flufl(
    parsed: Parsed, message: Message, temporary: set[str], permanent: set[str]
) -> Reading:
    text = _human_text(message)
    subject = parsed.header("Subject")
    recipients = []
    for address in sorted(permanent):
        near = one_line(_near(text, address), 800)
        failure = read_failure("", f"{near} {subject}", "failed")
        recipients.append(RecipientReport(address, "failed", failure.status, near, failure))
    for address in sorted(temporary - permanent):
        near = one_line(_near(text, address), 800)
        failure = read_failure("", near, "delayed")
        recipients.append(RecipientReport(address, "delayed", failure.status, near, failure))
    mid, to = _original(message)
    return Reading(
        kind="bounce",
        recipients=recipients,
        original_message_id=mid or _message_id_in_text(message),
        original_to=to,
        detector="flufl.bounce",
    )


def _generic_bounce(parsed: Parsed, message: Message) -> Reading:
    """A mail system's report that no detector above knows: a DSN whose MIME is broken (its
    fields are read from the text), or a plain-text bounce read for the returned message's
    recipient and the lines that follow a failed address."""
    try:
        whole = message.as_string()[: 256 * 1024]
    except Exception:
        whole = ""
    found = _DSN_FIELDS.search(whole)
    if found:
        reading = _read_dsn(message, _blocks_from_text(whole[found.start() :]))
        if reading is not None:
            reading.detector = "dsn-text"
            return reading
    text = _human_text(message) or text_of(message)
    subject = parsed.header("Subject")
    mid, to = _original(message)
    own = {a.lower() for a in addresses_in([parsed.header("From"), parsed.header("To")])}
    in_text: list[str] = []
    for match in _ADDRESS.finditer(text):
        address = match.group(0).strip(".")
        lowered = address.lower()
        if lowered in own or _NOT_RECIPIENT.match(address) or not _plausible(address):
            continue
        if lowered not in [a.lower() for a in in_text]:
            in_text.append(address)
    original = addresses_in(to)
    chosen = in_text[:10] or original
    if not chosen:
        return Reading(kind="", note="looks like a bounce, but names no recipient")
    action = "delayed" if _DELAY.search(subject) else "failed"
    recipients = []
    for address in chosen:
        near = one_line(_near(text, address), 800)
        failure = read_failure("", f"{near} {subject}", action)
        recipients.append(RecipientReport(address, action, failure.status, near, failure))
    return Reading(
        kind="bounce",
        recipients=recipients,
        original_message_id=mid or _message_id_in_text(message),
        original_to=to,
        detector="generic",
    )
