"""A send that failed, read once where it failed into data (`core.failures.Failure`: the SMTP
reply code, the enhanced status code, the severity), and the outcome it gives.

Whose problem it is follows one rule: a failure is about the recipient only when a server
answered about the recipient or the message (a reply to RCPT or to the data). Everything
before that, or without an answer, is ours (severity `ours`): our relay refused the
connection or is down, the greeting timed out, TLS or AUTH failed, our envelope sender was
refused, the connection dropped, a template failed. Ours is retried (and given up on after
the attempts, like a 4xx), never counted against the subscriber, and shown apart in stats.
The recipient's failures are read by the bounce policy's reading of a DSN (`read_failure`),
so a `550 5.1.1` while sending and a DSN saying the same are the same failure.

`error` keeps the server's words for people; no code reads a status back out of it.
"""

from __future__ import annotations

from dataclasses import replace

from digestd.core.failures import Failure, Severity
from digestd.core.statuses import DeliveryStatus
from digestd.delivery.deliveries import Claim, Outcome, temporary_failure
from digestd.mail.mime import one_line
from digestd.mail.reasons import read_failure, status_in
from digestd.mail.smtp_pool import ADDRESS, CONNECT, SENDER, PermanentSendError, SendError

# Reasons of our own failures (Failure.reason when the severity is `ours`).
RELAY = "relay"  # connecting, greeting, TLS or AUTH with DIGESTD_SMTP_HOST failed
SENDER_REFUSED = "sender refused"  # MAIL FROM was refused: our address or our account
CONNECTION_LOST = "connection lost"  # no reply: a dropped connection or a timeout
RENDER = "render"  # the digest could not be rendered (an admin's template)
INTERNAL = "internal"  # anything else in our code (an address the encoder refuses, say)
# The relay cannot carry the address (a non-ASCII local part, no SMTPUTF8): ours, and final.
SMTPUTF8 = "smtputf8"


def read_smtp_reply(code: int | None, reply: str) -> Failure:
    """A server's refusal while sending (e.g. 550 and `5.1.1 user unknown`), read like the
    same refusal in a DSN; the reply code and the enhanced status code are kept."""
    status = status_in(reply[:40])
    if not status and code:
        status = f"{str(code)[0]}.0.0"
    return replace(read_failure(status, f"{code or ''} {reply}", "failed"), code=code)


def ours(reason: str, *, code: int | None = None, reply: str = "") -> Failure:
    """One of our own failures (see the module)."""
    return Failure(Severity.OURS, reason, status_in(reply[:40]) if code else "", code)


def failure_of(exc: SendError) -> Failure:
    """What the SMTP pool's error says, as data (see the module for whose problem it is)."""
    if exc.stage == CONNECT:
        return ours(RELAY, code=exc.code, reply=exc.reply)
    if exc.stage == SENDER:
        return ours(SENDER_REFUSED, code=exc.code, reply=exc.reply)
    if exc.stage == ADDRESS:
        return ours(SMTPUTF8)
    if exc.code is None:
        return ours(CONNECTION_LOST)
    return read_smtp_reply(exc.code, exc.reply)


def send_failed(claim: Claim, exc: SendError) -> Outcome:
    """The outcome of a send the pool refused: a recipient's permanent refusal fails the
    delivery at once; a temporary one, and every failure of ours, is tried again later."""
    failure = failure_of(exc)
    permanent = isinstance(exc, PermanentSendError)
    # A permanent error's reply comes without its code (a temporary one's has it).
    reply = one_line(f"{exc.code} {exc.reply}" if permanent and exc.code else exc.reply)
    # An address the relay cannot carry fails once too: another try meets the same relay.
    if permanent and (not failure.ours or exc.stage == ADDRESS):
        return Outcome(claim, DeliveryStatus.FAILED, reply, failure=failure)
    return temporary_failure(claim, reply or "temporary failure", failure)
