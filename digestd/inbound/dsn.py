"""Reading an RFC 3464 delivery status notification, recipient by recipient.

The blocks come from the one-pass view (`Mail.delivery_status`, or blocks read from the
text of a report whose MIME is broken); at most MAX_RECIPIENTS recipients are read, the
rest counted (`Reading.more_recipients`).
"""

from __future__ import annotations

from digestd.core.failures import Failure
from digestd.inbound.addresses import addresses_in
from digestd.inbound.message import Blocks, Mail
from digestd.inbound.reading import SUCCESS_ACTIONS, Reading, RecipientReport, capped
from digestd.mail.reasons import read_failure, status_in

# Non-standard Action values seen in the wild.
_ACTIONS = {"failure": "failed", "error": "failed", "fail": "failed", "delay": "delayed"}


def strip_type(value: str) -> str:
    """`rfc822; <a@b>` → `a@b`."""
    value = value.split(";", 1)[1] if ";" in value else value
    return value.strip().strip("<>").strip()


def plausible(address: str) -> bool:
    """An address worth reporting ('david...@gmail.com', an X.400 path: no)."""
    local, _, domain = address.rpartition("@")
    return bool(local and "." in domain and ".." not in local and not local.endswith("."))


def _recipient(block: dict[str, str]) -> RecipientReport | None:
    # The original recipient is the address we sent to (the final one may be a
    # forwarding target or an internal name like userx@sims-ms-daemon).
    original = strip_type(block.get("original-recipient", ""))
    address = original if "@" in original else block.get("final-recipient", "")
    if not address and "action" not in block:
        return None
    action = block.get("action", "").split()[0].lower() if block.get("action") else ""
    action = _ACTIONS.get(action, action)
    status = status_in(block.get("status", ""))
    raw = block.get("diagnostic-code", "")
    diagnostic = strip_type(raw) if raw else ""
    kind = raw.split(";", 1)[0].strip().lower() if ";" in raw else ""
    return RecipientReport(
        diagnostic_type=kind[:16],
        final=strip_type(block.get("final-recipient", "")),
        address=strip_type(address or ""),
        action=action or ("failed" if status.startswith("5") else "delayed"),
        status=status,
        diagnostic=diagnostic,
    )


def read_dsn(mail: Mail, report: Blocks, report_text: str | None = None) -> Reading | None:
    """The recipients of one report part and what happened to each; None if it names none.

    `report_text`: the human-readable text of the report, when it is not the message's first
    text part (a report whose MIME is broken is read from its raw text)."""
    recipients = [r for r in map(_recipient, report.blocks) if r is not None]
    recipients = [r for r in recipients if plausible(r.address) or (not r.address and r.status)]
    if not recipients:
        return None
    recipients, more = capped(recipients, report.more)
    # Recipients without a diagnostic of their own share the report's text: each distinct
    # (status, text, action) is read once, not once a recipient.
    readings: dict[tuple[str, str, str], Failure] = {}
    context = report_text if report_text is not None else mail.human_text
    for r in recipients:
        text = r.diagnostic
        if r.diagnostic_type == "x-unix":
            text = f"x-unix; {text}"  # the local delivery program failed
        if not text and r.action not in SUCCESS_ACTIONS:
            text = context
        key = (r.status, text, r.action)
        if key not in readings:
            readings[key] = read_failure(*key, context=context)
        r.failure = readings[key]
    returned = mail.returned
    if not recipients[0].address and returned.to:
        for r, a in zip(recipients, addresses_in(list(returned.to)), strict=False):
            r.address = r.address or a
    for r in recipients:
        if r.action not in (*SUCCESS_ACTIONS, "failed", "delayed") and r.status.startswith("2"):
            r.action = "delivered"  # e.g. "deliverable" (an address check): not a failure
            r.failure = read_failure(r.status, "", r.action)
    success = all(r.action in SUCCESS_ACTIONS for r in recipients)
    return Reading(
        kind="delivery_report" if success else "bounce",
        recipients=recipients,
        original_message_id=returned.message_id or mail.message_id_in_text,
        original_to=list(returned.to),
        detector="dsn",
        more_recipients=more,
    )
