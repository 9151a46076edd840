"""Email commands to the request address, listserv style: subscribe, unsubscribe, follow,
unfollow, help.

This is the mail counterpart of the subscription pages, so it reuses the web's flow for
`subscribe` (the same double opt-in, the same per-address mail limit) instead of a copy.
From can be forged, so nothing changes by mail alone: `subscribe` and `unsubscribe` both
answer with a link to confirm, sent to the address itself; `follow NAME` and `unfollow NAME`
answer with the person's preferences link, the name filled in, to be saved with one press.

No loops (RFC 3834): no reply to the null sender, a mail system, an auto-reply or a list,
replies carry `Auto-Submitted: auto-replied` and go out with the null envelope sender, so
whatever answers them automatically has nowhere to answer to.

Not a way to mail strangers: a reply goes only to the envelope sender, and only when From
names the same address (`reply_address`; never to Reply-To); it has a fixed subject and
never quotes the sender's subject or body; and replies are capped per hour per recipient,
per sender and in total (`reply_limits`), and together with its confirmation mails one
address gets at most `optin.MAILS_PER_ADDRESS_PER_DAY` mails a day (the subscriber side
counts them, whichever way they were asked for).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from urllib.parse import quote, urlencode

from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.statuses import ConsentVia
from digestd.inbound import addresses, reply_limits
from digestd.inbound.classify import is_auto_reply, looks_like_daemon
from digestd.inbound.parse import Parsed, text_of, walk
from digestd.mail import templating
from digestd.mail.mime import compose
from digestd.mail.smtp_pool import SendError, SmtpPool
from digestd.subscribers import manage, optin, signup
from digestd.subscribers.preferences import (
    TOPICS_MAX,
    InvalidInput,
    Preferences,
    deliverable_email,
    normalize_email,
)

log = logging.getLogger(__name__)
ACTOR = "mail"
COMMANDS = ("subscribe", "unsubscribe", "follow", "unfollow", "help")
_ALIASES = {
    "join": "subscribe",
    "leave": "unsubscribe",
    "signoff": "unsubscribe",
    "stop": "unsubscribe",
}
_LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailing-List")
# Replies have fixed subjects ({site}: the site's name): never the sender's words.
SUBJECTS = {
    "help": "How to use {site} by email",
    "unknown": "How to use {site} by email",
    "unsubscribe": "Confirm to unsubscribe from {site}",
    "follow": "Confirm to follow an author in {site}",
    "unfollow": "Confirm to stop following an author in {site}",
}
# An author's name as a mail command may carry it into a link: letters (any alphabet),
# spaces and . , ' ’ - only (no digits, addresses or URLs), at most NAME_MAX characters.
_AUTHOR = re.compile(r"[^\W\d_][^\W\d_ .,'’-]*(?:[ .,'’-]+[^\W\d_]*)*")
NAME_MAX = 100
_MSG_ID = re.compile(r"<[!-;=?-~]{1,200}@[!-;=?-~]{1,200}>")


@dataclass
class Outcome:
    """What a command did (for the record) and the replies to send."""

    effect: str
    sender: str = ""
    replies: list[EmailMessage] = field(default_factory=list)


def why_not_reply(parsed: Parsed, mail_from: str | None) -> str:
    """'' when a reply is safe, else why not (null sender, daemon, auto-reply, list)."""
    if mail_from is not None and mail_from.strip("<> ") == "":
        return "sent from the null sender"
    if looks_like_daemon(parsed, mail_from):
        return "sent by a mail system"
    if is_auto_reply(parsed):
        return "an automatic reply"
    precedence = parsed.header("Precedence").lower()
    if precedence in ("list", "bulk", "junk") or any(parsed.header(h) for h in _LIST_HEADERS):
        return "sent by a mailing list"
    return ""


def reply_address(parsed: Parsed, mail_from: str | None) -> tuple[str, str]:
    """(address, '') to reply to: the envelope sender, when From names that one address;
    else ('', why not). Without `mail_from` (IMAP), the topmost Return-Path stands for it:
    the delivering server writes it there."""
    envelope = mail_from if mail_from is not None else parsed.header("Return-Path")
    envelope = envelope.strip().strip("<>").strip()
    if not envelope:
        return "", "no envelope sender"
    named = [address for _, address in getaddresses([parsed.header("From")]) if address]
    if len(named) != 1:
        return "", "From does not name one address"
    try:
        envelope, author = normalize_email(envelope), normalize_email(named[0])
    except InvalidInput:
        return "", "no valid sender address"
    if envelope != author:
        return "", "envelope sender is not the From address"
    return envelope, ""


def read_command(parsed: Parsed) -> tuple[str, str]:
    """(command, arguments) from the first line of the text (or the subject when it is empty)."""
    lines: list[str] = []
    if parsed.message is not None:
        for part in walk(parsed.message):
            if part.get_content_type() == "text/plain":
                lines = text_of(part).splitlines()
                break
    words = ""
    for line in lines:
        text = line.strip()
        if text and not text.startswith(">"):
            words = text
            break
    subject = parsed.header("Subject")
    first = words.split(maxsplit=1) if words else []
    from_subject = subject.split() and _name(subject.split()[0]) in COMMANDS
    if (not first or _name(first[0]) not in COMMANDS) and from_subject:
        first = subject.split(maxsplit=1)
    if not first:
        return "", ""
    return _name(first[0]), (first[1] if len(first) > 1 else "").strip()


def _name(word: str) -> str:
    word = word.strip().lower().rstrip(":")
    return _ALIASES.get(word, word)


def handle(ctx: AppContext, parsed: Parsed, *, mail_from: str | None, source: str = "") -> Outcome:
    """Carry out one command (its own transactions); returns the effect and replies.

    `mail_from` is the envelope sender (None: unknown, then Return-Path is read), `source`
    where the message came from (`smtp:HOST:PORT` from the listener: the per-sender cap)."""
    _, author = parseaddr(parsed.header("From"))
    author = author.strip()
    command, args = read_command(parsed)
    why = why_not_reply(parsed, mail_from)
    if why:
        return Outcome(f"{command or 'no command'}: no reply ({why})", author)
    sender, why = reply_address(parsed, mail_from)
    if why:
        return Outcome(f"{command or 'no command'}: no reply ({why})", author)
    return _answer(ctx, parsed, command, args, sender, reply_limits.sender_of(source, sender))


def _answer(
    ctx: AppContext, parsed: Parsed, command: str, args: str, sender: str, origin: str
) -> Outcome:
    """The command of a sender we may answer, within the reply caps (counted when a reply
    is made)."""
    now = ctx.now()
    caps = reply_limits.ReplyCaps.from_settings(ctx.settings)
    with session_scope(ctx.engine) as session:
        over = reply_limits.refusal(
            session, ctx.secret_key, caps, recipient=sender, sender=origin, now=now
        )
        if over:
            return Outcome(f"{command or 'no command'}: no reply ({over})", sender)
    outcome = _carry_out(ctx, parsed, command, args, sender, now)
    if outcome.replies:
        with session_scope(ctx.engine) as session:
            reply_limits.record(session, ctx.secret_key, recipient=sender, sender=origin, now=now)
    return outcome


def _carry_out(
    ctx: AppContext, parsed: Parsed, command: str, args: str, sender: str, now: datetime
) -> Outcome:
    if command == "subscribe":
        return _subscribe(ctx, parsed, sender, args)
    # One daily cap per address for confirmations and replies together (and none at all
    # to a suppressed address), counted by the subscriber side.
    if not signup.may_reply(ctx, sender):
        why = f"suppressed or daily limit for {sender} reached"
        return Outcome(f"{command}: no reply ({why})", sender)
    url = None
    if command == "unsubscribe":
        url = manage.unsubscribe_link_for(ctx, sender)
        if url is None:
            return Outcome("unsubscribe: not subscribed, no reply", sender)
    if command in ("follow", "unfollow"):
        return _follow(ctx, parsed, sender, command, args)
    signup.reply_sent(ctx, sender)
    if url is not None:
        reply = _reply(ctx, parsed, sender, "unsubscribe", unsubscribe_url=url)
        return Outcome("unsubscribe: confirmation link sent", sender, [reply])
    kind = "help" if command == "help" else "unknown"
    reply = _reply(ctx, parsed, sender, kind)
    return Outcome(f"{command or 'unknown command'}: help sent", sender, [reply])


def _follow(ctx: AppContext, parsed: Parsed, sender: str, command: str, args: str) -> Outcome:
    """The preferences link with the author filled in (`?follow=` or `?unfollow=`); the
    reply never repeats the name in its words, only in the link (it is the sender's text)."""
    name = " ".join(args.split())
    if len(name) > NAME_MAX or not _AUTHOR.fullmatch(name):
        signup.reply_sent(ctx, sender)
        reply = _reply(ctx, parsed, sender, "help")
        return Outcome(f"{command}: no author name, help sent", sender, [reply])
    url = manage.preferences_link_for(ctx, sender)
    if url is None:
        return Outcome(f"{command}: not subscribed, no reply", sender)
    signup.reply_sent(ctx, sender)
    link = f"{url}?{urlencode({command: name}, quote_via=quote)}"
    reply = _reply(ctx, parsed, sender, command, preferences_url=link)
    return Outcome(f"{command}: preferences link sent", sender, [reply])


def _subscribe(ctx: AppContext, parsed: Parsed, sender: str, args: str) -> Outcome:
    # The web form's own opt-in: the same validation, double opt-in and per-address limit.
    try:
        sender = deliverable_email(sender, smtputf8=ctx.settings.smtp_smtputf8)
        prefs = Preferences(topics=args[:TOPICS_MAX]).validated()
    except InvalidInput as exc:
        return Outcome(f"subscribe: {exc}", sender)
    wanted = signup.request_subscription(
        ctx, sender, prefs, via=ConsentVia.MAIL, actor=ACTOR, source="mail command"
    )
    if wanted is None:
        return Outcome("subscribe: no mail (suppressed or daily limit reached)", sender)
    env = templating.make_environment(ctx.settings)
    message = optin.build_message(env, ctx.settings, wanted)
    _as_reply(message, parsed)
    return Outcome(f"subscribe: {wanted.kind} mail sent", sender, [message])


def _reply(ctx: AppContext, parsed: Parsed, to: str, kind: str, **values: str) -> EmailMessage:
    env = templating.make_environment(ctx.settings)
    text = env.get_template("email/command.txt").render(
        kind=kind,
        email=to,
        base_url=ctx.settings.base_url,
        request_address=addresses.request_address(ctx.settings),
        **values,
    )
    site = str(env.globals.get("site_name", "digestd"))
    message = compose(
        sender=ctx.settings.from_address,
        to=to,
        subject=SUBJECTS[kind].format(site=site),
        text=text.strip() + "\n",
        message_id=make_msgid(domain=addresses.request_address(ctx.settings).split("@")[1]),
    )
    _as_reply(message, parsed)
    return message


def _as_reply(message: EmailMessage, parsed: Parsed) -> None:
    """Mark an answer as an automatic reply to `parsed` (RFC 3834)."""
    del message["Auto-Submitted"]
    message["Auto-Submitted"] = "auto-replied"
    if "X-Auto-Response-Suppress" not in message:
        message["X-Auto-Response-Suppress"] = "All"
    # Threads the answer for the person; only a well-formed Message-ID, never other text.
    original = _MSG_ID.fullmatch(parsed.header("Message-ID").strip())
    if original:
        message["In-Reply-To"] = original.group(0)
        message["References"] = original.group(0)


def send_replies(ctx: AppContext, replies: list[EmailMessage]) -> int:
    """Send command replies with the null envelope sender; returns how many went out.

    Callable from plain code and from inside an event loop (the SMTP listener): in the
    latter case the sending runs in a short-lived thread with its own loop."""

    async def send_all() -> int:
        sent = 0
        async with SmtpPool(ctx.settings, max_connections=1) as pool:
            for message in replies:
                to = parseaddr(str(message["To"]))[1]
                try:
                    await pool.send_bytes("", to, message.as_bytes())
                    sent += 1
                except SendError as exc:
                    log.warning("reply to %s not sent: %s", to, exc)
        return sent

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(send_all())
    box: list[int] = [0]
    thread = threading.Thread(target=lambda: box.__setitem__(0, asyncio.run(send_all())))
    thread.start()
    thread.join(timeout=ctx.settings.smtp_timeout * 2 + 5)
    return box[0]
