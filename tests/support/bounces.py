"""Inbound test mail: an RFC 3464 delivery status notification for a message we sent."""

from __future__ import annotations

from email.utils import formatdate, make_msgid


def dsn(
    *,
    to: str,
    failed_recipient: str,
    original_message_id: str = "",
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 User unknown",
    reporting_mta: str = "mx.example.net",
) -> bytes:
    """A DSN as Postfix writes one, sent from <> to `to` (our VERP address) about
    `failed_recipient`; the returned headers carry `original_message_id`."""
    boundary = "dsn-boundary-0123456789"
    returned = (
        f"From: digestd <digest@example.org>\r\nTo: {failed_recipient}\r\n"
        f"Subject: Your digest\r\nMessage-ID: {original_message_id}\r\n"
        if original_message_id
        else f"To: {failed_recipient}\r\n"
    )
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {make_msgid(domain=reporting_mta)}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"\r\n"
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"\r\n"
        f"Final-Recipient: rfc822; {failed_recipient}\r\n"
        f"Original-Recipient: rfc822; {failed_recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
        f"{returned}"
        f"\r\n"
        f"--{boundary}--\r\n"
    ).encode()
