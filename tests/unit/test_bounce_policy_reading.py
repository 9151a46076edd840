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
        # The remote server's own reply wins over the reporting MTA's wrapper (issue 25).
        ("5.0.0", "5.1.0 - Unknown address error 552-'5.2.2 Mailbox Full'", "soft", "mailboxfull"),
        (
            "5.4.7",
            "450 4.7.1 <mx.example>: Client host rejected: may not be MX",
            "sender",
            "blocked",
        ),
        (
            "5.0.0",
            "5.1.0 - Unknown address error 550-'5.7.1 <x@y.example>... Access denied'",
            "sender",
            "blocked",
        ),
        # A full mailbox, a quota, a greylist or a rate limit is never hard.
        ("5.1.1", "552 5.1.1 <a@b.example>: quota exceeded", "soft", "mailboxfull"),
        ("5.0.0", "550 Ip frequency limited [Blocked IP 192.0.2.22]", "soft", "toomanyconn"),
        ("5.7.1", "550 5.7.1 Greylisted for 5 minutes, user unknown yet", "soft", "greylisted"),
        # Where it was refused: after DATA "user unknown" is the recipient's filter (the
        # address was accepted at RCPT); at MAIL FROM or the greeting it is about us.
        ("5.0.0", "550 User unknown (in reply to end of DATA command)", "soft", "filtered"),
        ("5.2.0", "550 Unknown user a@b.example", "soft", "filtered"),
        ("5.0.0", "550 5.1.1 User unknown (in reply to RCPT TO command)", "hard", "userunknown"),
        (
            "5.1.0",
            "after MAIL FROM:<us@x.example>: 553 5.1.0 x.example does not exist",
            "sender",
            "rejected",
        ),
        (
            "5.0.0",
            "Connected to 192.0.2.1 but my name was rejected. 501 5.0.0 Invalid domain",
            "sender",
            "blocked",
        ),
        (
            "5.1.1",
            "x-unix; procmail: Couldn't create /var/spool/mail/a: No such user",
            "soft",
            "mailererror",
        ),
        ("5.1.1", "550 5.1.1 RCP-P2 Refused due to recipient preferences", "soft", "filtered"),
        (
            "5.0.0",
            "554 Transaction failed: Duplicate header 'DKIM-Signature'.",
            "soft",
            "undefined",
        ),
    ],
)
def test_read_failure(status: str, diagnostic: str, severity: str, reason: str) -> None:
    failure = read_failure(status, diagnostic, "failed")
    assert (failure.severity, failure.reason) == (severity, reason)
    assert failure.hard == (severity == "hard")


def test_the_transcript_says_where_a_refusal_came() -> None:
    """A Sendmail transcript in the report's text (`context`) tells the stage."""
    greeting = "... while talking to mx.example.:\n<<< 554 mx ESMTP not accepting connections\n"
    assert read_failure("5.5.0", "554 mx ESMTP go away", context=greeting).reason == "blocked"
    after_data = "... while talking to mx.example.:\n>>> DATA\n<<< 550 : User unknown\n"
    assert read_failure("5.0.0", "550 : User unknown", context=after_data).reason == "filtered"
    at_rcpt = "... while talking to mx.example.:\n>>> RCPT To:<a@b>\n<<< 550 User unknown\n"
    assert read_failure("5.0.0", "550 User unknown", context=at_rcpt).hard


def test_delays_and_deliveries_are_not_failures() -> None:
    assert read_failure("4.4.7", "still trying", "delayed").severity == "none"
    assert read_failure("2.0.0", "", "delivered").severity == "none"
    assert read_failure("2.0.0", "", "relayed").reason == "delivered"


def test_a_synchronous_5xx_reply_is_read_the_same_way() -> None:
    assert read_smtp_reply(550, "5.1.1 <a@b.example>: user unknown").hard
    assert read_smtp_reply(552, "5.2.2 mailbox full").severity == "soft"
    assert read_smtp_reply(554, "5.7.1 rejected: listed on spamhaus").severity == "sender"
    assert read_smtp_reply(550, "Requested action not taken").severity == "soft"
