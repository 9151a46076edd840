"""Reading a failure: hard (the address is bad), soft (try again), sender (about us)."""

from __future__ import annotations

import pytest

from digestd.delivery.failures import read_smtp_reply
from digestd.mail.reasons import read_failure


@pytest.mark.parametrize(
    ("status", "diagnostic", "severity", "reason"),
    [
        (
            "5.1.1",
            "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown",
            "hard",
            "userunknown",
        ),
        ("5.1.2", "Host or domain name not found", "hard", "hostunknown"),
        ("5.1.6", "", "hard", "hasmoved"),
        ("5.1.10", "Recipient address has null MX", "hard", "notaccept"),
        ("5.2.2", "mailbox full", "soft", "mailboxfull"),
        ("4.2.2", "over quota", "soft", "mailboxfull"),
        ("5.4.7", "delivery time expired", "soft", "expired"),
        ("4.1.1", "user unknown (temporary lookup failure)", "soft", "userunknown"),
        (
            "5.7.1",
            "Service unavailable; client host blocked using zen.spamhaus.org",
            "sender",
            "blocked",
        ),
        ("5.7.26", "Unauthenticated email is not accepted (DMARC)", "sender", "securityerror"),
        ("5.7.1", "Message rejected as spam", "sender", "spamdetected"),
        ("5.0.0", "554 Relay access denied", "sender", "norelaying"),
        ("5.2.1", "550 5.2.1 <a@b.example>... User Unknown", "hard", "userunknown"),
        ("5.1.0", "550 5.1.0 <bounce@x.example> sender rejected", "sender", "rejected"),
        ("5.0.0", "550 #5.1.0 Address rejected.", "hard", "userunknown"),
        ("", "550 No such user here", "hard", "userunknown"),
        ("", "something we have never seen", "soft", "undefined"),
    ],
)
def test_read_failure(status: str, diagnostic: str, severity: str, reason: str) -> None:
    failure = read_failure(status, diagnostic, "failed")
    assert (failure.severity, failure.reason) == (severity, reason)
    assert failure.hard == (severity == "hard")


def test_delays_and_deliveries_are_not_failures() -> None:
    assert read_failure("4.4.7", "still trying", "delayed").severity == "none"
    assert read_failure("2.0.0", "", "delivered").severity == "none"
    assert read_failure("2.0.0", "", "relayed").reason == "delivered"


def test_a_synchronous_5xx_reply_is_read_the_same_way() -> None:
    assert read_smtp_reply(550, "5.1.1 <a@b.example>: user unknown").hard
    assert read_smtp_reply(552, "5.2.2 mailbox full").severity == "soft"
    assert read_smtp_reply(554, "5.7.1 rejected: listed on spamhaus").severity == "sender"
    assert read_smtp_reply(550, "Requested action not taken").severity == "soft"
