"""What a returned message says, before any evidence is weighed or any policy applied.

A `Reading` is the classifiers' answer (`digestd.inbound.classify`) and what the record
and the policy take (`digestd.inbound.record.record_reading`): provider webhooks build one
from a verified event and hand it to the same place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from digestd.core.failures import Failure

# Recipients read from one report. A real DSN names a handful (one, for our one-recipient
# digests); past this, the rest are counted and noted in the summary, never acted on, so
# one report cannot turn into thousands of subscriber changes or queries.
MAX_RECIPIENTS = 100
SUCCESS_ACTIONS = ("delivered", "relayed", "expanded")


@dataclass
class RecipientReport:
    """One recipient of a report: the address and what happened to it."""

    address: str
    action: str = "failed"  # failed | delayed | delivered | relayed | expanded
    status: str = ""
    diagnostic: str = ""
    failure: Failure = field(default_factory=lambda: Failure("none", ""))
    final: str = ""  # Final-Recipient, when a DSN names an Original-Recipient too
    diagnostic_type: str = ""  # the Diagnostic-Code's type: smtp, x-unix, x-postfix…

    def names(self, address: str) -> bool:
        """Whether this report is about `address` (its original or its final recipient)."""
        wanted = address.strip().lower()
        return bool(wanted) and wanted in (self.address.strip().lower(), self.final.lower())

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
    """What a message is, before routing, evidence and policy."""

    kind: str  # bounce | complaint | auto_reply | delivery_report | "" (a person's mail)
    recipients: list[RecipientReport] = field(default_factory=list)
    original_message_id: str = ""
    original_to: list[str] = field(default_factory=list)
    feedback_type: str = ""
    detector: str = ""
    note: str = ""
    # Recipients the report named past MAX_RECIPIENTS: counted, not read, never acted on.
    more_recipients: int = 0
    # Message-IDs the message carries that may be ours (returned headers, In-Reply-To,
    # References, an ARF report's original): what ties it to a delivery (`evidence`).
    message_ids: list[str] = field(default_factory=list)


def capped(recipients: list[RecipientReport], more: int = 0) -> tuple[list[RecipientReport], int]:
    """The first MAX_RECIPIENTS recipients, and how many more there were (`more` included)."""
    extra = max(0, len(recipients) - MAX_RECIPIENTS)
    return recipients[:MAX_RECIPIENTS], more + extra
