"""SQLModel tables: the whole data model of DESIGN.md.

Enumerations are stored as short strings (checked in code), JSON columns hold
lists, and every timestamp is stored as naive UTC and read back as aware UTC
(`UTCDateTime`), so SQLite and PostgreSQL behave the same.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from digestd.core.statuses import ConsentVia, DeliveryStatus, StoppedBy, SubscriberStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC on every backend: aware in Python, naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model (for bulk statements; SQLModel does not type `__table__`)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def utcnow() -> datetime:
    """The real current time (aware UTC); code under test takes its clock from AppContext."""
    return datetime.now(UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _published_at(context: Any) -> Any:
    """A column default: the row's published_at (Entry.listed_at left unset)."""
    return context.get_current_parameters().get("published_at")


def empty_list() -> list[Any]:
    """A new []: a default factory. pydantic reads a factory's signature each time it fills
    a default; a builtin's (`list`, `dict`) is parsed from text, about 110 us against 6 us for
    a Python function, on every model made with the field left out."""
    return []


def empty_dict() -> dict[str, Any]:
    """A new {}: a default factory (see `empty_list`)."""
    return {}


def _json_list() -> Any:
    return Field(default_factory=empty_list, sa_type=sa.JSON, nullable=False)


def _enum(enum: type[StrEnum]) -> sa.Enum:
    """A StrEnum column: stored as its lowercase value in a VARCHAR(16) (no database enum
    type to migrate), read back as the Enum; an unknown value is refused on write."""
    return sa.Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def new_link_key() -> str:
    """A fresh random link key (72 bits, URL-safe): every signed link of a subscriber is
    bound to it (`digestd.core.tokens`), so a new key withdraws every link handed out."""
    return secrets.token_urlsafe(9)


# ---- enumerations (stored as strings; statuses are in digestd.core.statuses) ----------------

SOURCE_KINDS = ("auto", "rss", "arxiv_api", "hf_daily", "jsonfeed")
FREQUENCIES = ("daily", "weekly")
FORMATS = ("html", "text")


class Source(SQLModel, table=True):
    """A feed we read, with its conditional-GET validators and health."""

    __tablename__ = "source"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column_kwargs={"unique": True}, max_length=2048)
    kind: str = Field(default="auto", max_length=16)
    name: str = Field(default="", max_length=200)
    enabled: bool = Field(default=True)
    interval_minutes: int | None = Field(default=None)
    etag: str | None = Field(default=None, max_length=512)
    last_modified: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts(nullable=False)
    last_fetch_at: datetime | None = _ts()
    last_status: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None)
    last_duration_ms: int | None = Field(default=None)
    last_counts: dict[str, int] = Field(default_factory=empty_dict, sa_type=sa.JSON, nullable=False)
    failures: int = Field(default=0)
    next_fetch_at: datetime | None = _ts(index=True)
    # May it (and its redirects) reach this machine or a private network? Stated at
    # `sources add --allow-private`; a local file is this machine (ingest/sources.py).
    allow_private: bool = Field(default=False)
    # -- admin (migration 0016): the format the last parse detected (rss, atom, …; `kind`
    # stays what the admin asked, `auto` by default) and when a fetch last worked.
    format: str | None = Field(default=None, max_length=16)
    last_success_at: datetime | None = _ts()


class Entry(SQLModel, table=True):
    """One paper, merged across sources by its canonical key."""

    __tablename__ = "entry"

    id: int | None = Field(default=None, primary_key=True)
    source_id: int | None = Field(
        default=None, foreign_key="source.id", ondelete="SET NULL", index=True
    )
    canonical_key: str = Field(sa_column_kwargs={"unique": True}, max_length=512)
    version: int = Field(default=1)
    url: str = Field(default="", max_length=2048)
    pdf_url: str | None = Field(default=None, max_length=2048)
    code_url: str | None = Field(default=None, max_length=2048)
    title: str = Field(default="")
    authors: list[str] = _json_list()
    summary: str = Field(default="")
    summary_html: str = Field(default="")
    categories: list[str] = _json_list()
    keywords: list[str] = _json_list()
    published_at: datetime = _ts(nullable=False)
    ingested_at: datetime = _ts(nullable=False, index=True)
    updated_at: datetime | None = _ts()
    upvotes: int = Field(default=0)
    comments: int = Field(default=0)
    # Trending means new (issue 26). `listed_at`: when the paper became news, its
    # publication or its first day on Hugging Face Daily Papers, never after it was first
    # seen; the public pages and feeds place a paper on this day. Left unset, it is the
    # publication time (the column default). `recent`: it was listed at most
    # DIGESTD_PAPER_MAX_AGE_DAYS before it was first seen; only such papers enter digests
    # (a new source's back catalogue does not).
    listed_at: datetime = Field(
        default=None,
        sa_type=UTCDateTime,
        nullable=False,
        index=True,
        sa_column_kwargs={"default": _published_at},
    )
    recent: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})


class EntrySource(SQLModel, table=True):
    """Where an entry was seen: its guid is unique per source."""

    __tablename__ = "entry_source"
    __table_args__ = (sa.UniqueConstraint("source_id", "guid", name="uq_entry_source_guid"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entry.id", ondelete="CASCADE", index=True)
    source_id: int = Field(foreign_key="source.id", ondelete="CASCADE")
    guid: str = Field(max_length=2048)
    seen_at: datetime = _ts(nullable=False)


class EntryVersion(SQLModel, table=True):
    """A recorded revision of an entry (arXiv `replace`): the entry is updated, never duplicated."""

    __tablename__ = "entry_version"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entry.id", ondelete="CASCADE", index=True)
    version: int
    title: str = Field(default="")
    recorded_at: datetime = _ts(nullable=False)


class Schedule(Protocol):
    """What the time rules (`delivery.digests`) read of a subscriber (ORM or Core row)."""

    @property
    def frequency(self) -> str: ...
    @property
    def send_hour(self) -> int: ...
    @property
    def send_weekday(self) -> int: ...
    @property
    def timezone(self) -> str: ...


class Subscriber(SQLModel, table=True):
    """A person and their preferences; the email is normalized and unique.

    Read and written only through the subscriber store (`digestd.subscribers.store`); its
    status, why mail stopped and its consent change only in `digestd.subscribers.lifecycle`.
    """

    __tablename__ = "subscriber"
    # (status, id), not status alone: planning pages through the active subscribers in id
    # order (`subscribers.active_page`), which this index serves as one range scan. With a
    # status-only index, PostgreSQL's planner (statistics not yet gathered after a large
    # import) read and sorted every active row for each page: 0.2 s a page, 8 minutes to
    # plan 1M subscribers in benchmarks/bench_delivery.py. Its prefix still serves status
    # counts.
    # sqlite_autoincrement: an id is never given out twice, even after the newest subscriber
    # is forgotten (SQLite would otherwise reuse the largest rowid); PostgreSQL's identity
    # never reuses one either (migration 0010 converts existing databases).
    __table_args__ = (
        sa.Index("ix_subscriber_status_id", "status", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, sa_column_args=[sa.Identity()])
    email: str = Field(sa_column_kwargs={"unique": True}, max_length=320)
    name: str = Field(default="", max_length=200)
    status: SubscriberStatus = Field(
        default=SubscriberStatus.PENDING, sa_type=_enum(SubscriberStatus), nullable=False
    )
    topics: str = Field(default="")
    categories: list[str] = _json_list()
    # Authors followed (their papers lead the digest) and muted (never in it), as the reader
    # wrote them; matched by ranking/authors.py (migration 0017).
    follows: list[str] = Field(
        default_factory=empty_list,
        sa_type=sa.JSON,
        nullable=False,
        sa_column_kwargs={"server_default": "[]"},
    )
    muted_authors: list[str] = Field(
        default_factory=empty_list,
        sa_type=sa.JSON,
        nullable=False,
        sa_column_kwargs={"server_default": "[]"},
    )
    max_items: int = Field(default=10)
    frequency: str = Field(default="daily", max_length=8)
    send_hour: int = Field(default=8)
    send_weekday: int = Field(default=0)  # 0 = Monday, for weekly digests
    timezone: str = Field(default="UTC", max_length=64)
    format: str = Field(default="html", max_length=8)
    created_at: datetime = _ts(nullable=False)
    confirmed_at: datetime | None = _ts()
    unsubscribed_at: datetime | None = _ts()
    bounce_count: int = Field(default=0)
    # When the last counted soft bounce came (bounce_policy: one count a day, a long gap resets).
    bounce_last_at: datetime | None = _ts()
    # Bumped with every new link key; links signed before link keys existed carry it.
    token_version: int = Field(default=1)
    # Why mail stopped (None while it may go) and when; `suppressed`: no mail of any kind,
    # not even a confirmation (a bounce, a complaint), until an admin lifts it.
    stopped_by: StoppedBy | None = Field(default=None, sa_type=_enum(StoppedBy), nullable=True)
    stopped_at: datetime | None = _ts()
    suppressed: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Every signed link is bound to it (tokens.py); a new one withdraws them all.
    link_key: str = Field(
        default_factory=new_link_key, max_length=32, sa_column_kwargs={"server_default": ""}
    )
    # The consent record: when and how the person agreed to be mailed (the web form's time
    # and client address, an import file's own opt-in time, an admin, a mail command).
    # `confirmed_at` is the double opt-in; `unsubscribed_at` and `stopped_by` say when and
    # how consent ended.
    consent_given_at: datetime | None = _ts()
    consent_given_by: ConsentVia | None = Field(
        default=None, sa_type=_enum(ConsentVia), nullable=True
    )
    consent_source: str = Field(default="", max_length=300, sa_column_kwargs={"server_default": ""})
    consent_ip: str | None = Field(default=None, max_length=64)


class AddressMail(SQLModel, table=True):
    """One confirmation or command reply sent to an address: the per-address daily cap
    counts these, whatever way the mail was asked for (web form, mail command)."""

    __tablename__ = "address_mail"
    __table_args__ = (sa.Index("ix_address_mail_address_sent", "address", "sent_at"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=320)
    kind: str = Field(max_length=16)  # "confirmation" or "reply" (statuses.MailKind)
    sent_at: datetime = _ts(nullable=False)


class Delivery(SQLModel, table=True):
    """One digest for one subscriber and period; the unique key makes planning idempotent."""

    __tablename__ = "delivery"
    __table_args__ = (
        # Unique over first sends only (migration 0016): a resend (`resend_of`) repeats the
        # digest of its period. Planning's ON CONFLICT names this index's columns and where.
        sa.Index(
            "uq_delivery_subscriber_period",
            "subscriber_id",
            "period",
            unique=True,
            sqlite_where=sa.text("resend_of IS NULL"),
            postgresql_where=sa.text("resend_of IS NULL"),
        ),
        sa.Index("ix_delivery_status_next", "status", "next_attempt_at"),
        # (subscriber_id, sent_at), not subscriber_id alone: the never-twice query reads a
        # subscriber's deliveries sent after a window's start (deliveries.sent_entry_ids),
        # a range in this index, not their whole history. It serves subscriber_id alone too.
        sa.Index("ix_delivery_subscriber_sent", "subscriber_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE")
    period: str = Field(max_length=16)
    status: str = Field(default=DeliveryStatus.PENDING.value, max_length=16)
    window_start: datetime | None = _ts()
    window_end: datetime | None = _ts()
    due_at: datetime | None = _ts()
    attempts: int = Field(default=0)
    lease_until: datetime | None = _ts()
    claimed_by: str | None = Field(default=None, max_length=128)
    next_attempt_at: datetime | None = _ts()
    message_id: str = Field(max_length=255)
    error: str | None = Field(default=None)
    entry_count: int = Field(default=0)
    # The papers a sent delivery carried, as their ids in rank order, comma-separated
    # ("12,7,40"): the never-twice record and what "View in browser" shows. A column, not a
    # row per paper: writing ten rows a message (with their key and foreign-key checks) was
    # a tenth of the sending process's work (benchmarks/README.md), and nothing reads them
    # by paper. Written and parsed only in `deliveries.columns` (`joined_ids`, `split_ids`).
    # An id whose entry was deleted by hand is skipped where papers are shown, and a part
    # edited by hand into something else is skipped with a warning (`split_ids`).
    entry_ids: str = Field(default="", sa_column_kwargs={"server_default": ""})
    created_at: datetime = _ts(nullable=False)
    sent_at: datetime | None = _ts()
    # -- delcore (migration 0011): the last failure as data, and what a sent digest said --
    # Written by `deliveries.record` from the `Failure` read where the send failed
    # (core/failures.py); kept once the delivery is sent. NULL: no failure met.
    smtp_code: int | None = Field(default=None)  # the server's reply code (550), if it replied
    enhanced_status: str | None = Field(default=None, max_length=16)  # RFC 3463 (5.1.1)
    severity: str | None = Field(default=None, max_length=8)  # a core.failures.Severity value
    # The reason shown beside each paper of a sent digest, in the order of `entry_ids`, as
    # a JSON list of strings: "View in browser" shows what the mail said, whatever the
    # subscriber's topics are today. Written and read only in `deliveries.columns`.
    reasons: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # -- admin (migration 0016): a resend repeats the digest of `resend_of` (same papers and
    # window, its own Message-ID); NULL for a first send.
    resend_of: int | None = Field(default=None, foreign_key="delivery.id", ondelete="SET NULL")


class Event(SQLModel, table=True):
    """Audit trail: every subscriber change, who made it and when."""

    __tablename__ = "event"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int | None = Field(
        default=None, foreign_key="subscriber.id", ondelete="SET NULL", index=True
    )
    action: str = Field(max_length=64)
    actor: str = Field(default="", max_length=128)
    detail: dict[str, Any] = Field(default_factory=empty_dict, sa_type=sa.JSON, nullable=False)
    created_at: datetime = _ts(nullable=False, index=True)


# A bounce names its delivery by the Message-ID it returns (inbound mail).
sa.Index("ix_delivery_message_id", Delivery.message_id)

INBOUND_KINDS = (
    "bounce",
    "complaint",
    "unsubscribe",
    "auto_reply",
    "delivery_report",
    "command",
    "unrecognized",
)


class Inbound(SQLModel, table=True):
    """One message that came back (bounce, complaint, command, anything else): never lost."""

    __tablename__ = "inbound"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = _ts(nullable=False, index=True)
    kind: str = Field(max_length=16, index=True)
    source: str = Field(default="", max_length=200)
    # Forgetting a person erases what came back from them too (their address, headers).
    subscriber_id: int | None = Field(
        default=None, foreign_key="subscriber.id", ondelete="CASCADE", index=True
    )
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="SET NULL")
    address: str = Field(default="", max_length=320)
    status_code: str = Field(default="", max_length=16)
    severity: str = Field(default="", max_length=8)
    reason: str = Field(default="")
    summary: str = Field(default="", max_length=300)
    effect: str = Field(default="", max_length=300)
    message_id: str = Field(default="", max_length=255)
    size: int = Field(default=0)
    recipients: list[dict[str, Any]] = Field(
        default_factory=empty_list, sa_type=sa.JSON, nullable=False
    )
    headers: list[list[str]] = Field(default_factory=empty_list, sa_type=sa.JSON, nullable=False)
    # What tied it to a message we sent (issue 23): verp, message-id, mailto-token, provider;
    # "" for none (then it changed nothing); "unchecked" for rows recorded before 0015.
    evidence: str = Field(default="", max_length=16, sa_column_kwargs={"server_default": ""})


class Meta(SQLModel, table=True):
    """Small key/value facts about this installation (e.g. a generated secret key)."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="")


class Vote(SQLModel, table=True):
    """A subscriber's "more / less like this" on one paper, or a paper they named as liked.

    The only learning signal (no open or click tracking). One row per (subscriber, entry):
    voting again overwrites, so a repeated vote changes nothing. `interest` marks papers the
    subscriber listed as "papers I like" (CLI `--like`, preferences page): they describe
    the subscriber like topics do and do not fade; votes from digests fade with age.
    """

    __tablename__ = "vote"
    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "entry_id", name="uq_vote_subscriber_entry"),
        sa.Index("ix_vote_entry", "entry_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    entry_id: int = Field(foreign_key="entry.id", ondelete="CASCADE")
    value: int = Field(default=1)  # +1 more like this, -1 less like this
    interest: bool = Field(default=False)
    created_at: datetime = _ts(nullable=False)


class LibraryPaper(SQLModel, table=True):
    """A paper from a reader's own library (`--import-library`, the preference page's upload):
    its title and abstract describe the reader like a liked paper does, whether or not the
    paper is in the database (`entry_id` when it is). An import replaces the whole library."""

    __tablename__ = "library_paper"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", ondelete="CASCADE", index=True)
    entry_id: int | None = Field(default=None, foreign_key="entry.id", ondelete="SET NULL")
    ref: str | None = Field(default=None, max_length=300)  # "arxiv:…" or "doi:…"
    title: str = Field(default="", max_length=500)
    abstract: str = Field(default="")
    created_at: datetime = _ts(nullable=False)


class CommandReply(SQLModel, table=True):
    """One reply to a mail command, for the hourly reply caps (`inbound.reply_limits`).

    No personal data: the address replied to and the sender (its network, or its domain)
    are stored as keyed hashes; rows older than a day are deleted as new ones come.
    """

    __tablename__ = "command_reply"

    id: int | None = Field(default=None, primary_key=True)
    sent_at: datetime = _ts(nullable=False, index=True)
    recipient: str = Field(max_length=32)
    sender: str = Field(max_length=32)


class WebhookSeen(SQLModel, table=True):
    """A provider webhook's one-time value already accepted (a Mailgun token, a Standard
    Webhooks id, an SNS MessageId, …): the same value again is a replay, refused. Rows
    older than the replay window's margin are deleted as new ones come (`web.webhooks`)."""

    __tablename__ = "webhook_seen"
    __table_args__ = (sa.UniqueConstraint("provider", "key", name="uq_webhook_seen"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)
    key: str = Field(max_length=255)
    seen_at: datetime = _ts(nullable=False, index=True)
