"""What a failure is, as data: its severity (a named value) and the `Failure` every reading
of one produces, whether it came back by mail (a DSN, `mail.reasons.read_failure`)
or was the server's reply while sending (`delivery.failures`).

A failure is read once, where it happens, into these fields; nothing parses a status back
out of an error text. The severity says whose problem it is:

- `hard`: the address itself is bad (user unknown, no such domain): the subscriber is bounced;
- `soft`: it may work later or for another message (mailbox full, a 4xx about the recipient);
- `sender`: the recipient's server refused *us* (blocked, spam, policy, authentication of
  our domain): recorded and shown, never counted against the subscriber;
- `ours`: no server judged the recipient at all: our relay is down or refused the
  connection, our AUTH failed, a timeout before the greeting, our sender was refused, the
  connection dropped, a template failed to render. Never the list's fault: counted apart in
  `digestd stats`, never in its bounce rate, and the digest is tried again;
- `none`: not a failure (a delayed notice, a delivery report).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """Whose problem a failure is (see the module)."""

    HARD = "hard"
    SOFT = "soft"
    SENDER = "sender"
    OURS = "ours"
    NONE = "none"


# Severities that say something about the subscriber's address (the bounce policy reads them).
ABOUT_THE_ADDRESS = (Severity.HARD, Severity.SOFT)


@dataclass(frozen=True)
class Failure:
    """One failure as data: severity (a `Severity` value), a short reason (e.g.
    `userunknown`, `mailboxfull`, `relay`), the enhanced status code (RFC 3463, e.g.
    `5.1.1`, or "") and the SMTP reply code when a server replied (e.g. 550, or None)."""

    severity: str
    reason: str
    status: str = ""
    code: int | None = None

    def __post_init__(self) -> None:
        # Readers may pass the plain value ("hard"); it is kept as the named value.
        object.__setattr__(self, "severity", Severity(self.severity))

    @property
    def hard(self) -> bool:
        return self.severity == Severity.HARD

    @property
    def ours(self) -> bool:
        return self.severity == Severity.OURS
