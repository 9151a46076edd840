"""Mail that comes back, built the way mail systems build it (RFC 3464, RFC 5965, RFC 3834)."""

from __future__ import annotations

from email.utils import make_msgid

BOUNCE_ADDRESS = "bounces@bounce.example.org"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def dsn(
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
    original_headers: str = "",
    original_recipient: bool = False,
) -> bytes:
    """A Postfix-style DSN sent to `to` (the VERP address, or the plain bounce address)."""
    diag = diagnostic.format(r=recipient)
    orcpt = f"Original-Recipient: rfc822;{recipient}\n" if original_recipient else ""
    headers = original_headers or f"From: digest@example.org\nTo: {recipient}\nSubject: digest\n"
    return _crlf(
        f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Message-ID: {make_msgid(domain="mx.example.net")}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Thu, 26 Nov 2026 06:00:00 +0000

Final-Recipient: rfc822; {recipient}
{orcpt}Action: {action}
Status: {status}
Diagnostic-Code: {diag}

--BOUNDARY
Content-Type: text/rfc822-headers

{headers.strip()}

--BOUNDARY--
"""
    )


def arf(*, to: str, recipient: str, original_headers: str = "", feedback: str = "abuse") -> bytes:
    """An RFC 5965 feedback report (a mailbox provider's complaint loop)."""
    headers = original_headers or f"From: digest@example.org\nTo: {recipient}\nSubject: digest\n"
    return _crlf(
        f"""From: feedbackloop@fbl.example.net
To: {to}
Subject: FW: digest
Message-ID: {make_msgid(domain="fbl.example.net")}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="FBL"

--FBL
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--FBL
Content-Type: message/feedback-report

Feedback-Type: {feedback}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: {recipient}

--FBL
Content-Type: text/rfc822-headers

{headers.strip()}

--FBL--
"""
    )


def auto_reply(*, to: str, sender: str, in_reply_to: str = "") -> bytes:
    """A vacation notice (RFC 3834)."""
    reply = f"In-Reply-To: {in_reply_to}\n" if in_reply_to else ""
    return _crlf(
        f"""From: {sender}
To: {to}
Subject: Out of office: digest
Auto-Submitted: auto-replied
{reply}Message-ID: {make_msgid(domain="example.net")}

I am away until Monday and will not read mail about user unknown addresses.
"""
    )


def plain(*, sender: str, to: str, subject: str = "", body: str = "", extra: str = "") -> bytes:
    """A person's message (a command, or mail to the unsubscribe address)."""
    return _crlf(
        f"""From: {sender}
To: {to}
Subject: {subject}
Message-ID: {make_msgid(domain="example.net")}
{extra}MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

{body}
"""
    )
