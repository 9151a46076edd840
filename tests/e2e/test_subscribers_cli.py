"""`digestd subscribers …` end to end: the real CLI app on a real SQLite file and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry
from tests.support.subscribers import Invoke, json_of

DOCUMENTED_FIELDS = {
    "id",
    "email",
    "name",
    "status",
    "topics",
    "categories",
    "follows",
    "muted_authors",
    "frequency",
    "send_hour",
    "send_weekday",
    "timezone",
    "max_items",
    "format",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "bounce_count",
    "stopped_by",
    "stopped_at",
    "suppressed",
    "may_mail",
    "consent",
}


def _show(invoke: Invoke, email: str) -> dict:
    return json_of(invoke("subscribers", "show", email, "--json"))


def _one_error_line(result, code: int = 1) -> str:
    """The one error line of a problem found (1) or, with code=2, of a usage mistake."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_add_then_list_and_show(invoke: Invoke) -> None:
    result = invoke(
        "subscribers",
        "add",
        "Ada.Lovelace@Example.ORG",
        "--name",
        "Ada",
        "--topics",
        '"KV cache" retrieval -survey',
        "--categories",
        "cs.CL, cs.LG",
        "--frequency",
        "weekly",
        "--weekday",
        "fri",
        "--hour",
        "7",
        "--timezone",
        "europe/berlin",
        "--max-items",
        "5",
        "--format",
        "text",
        "--confirmed",
    )
    assert result.exit_code == 0, result.output
    assert "added ada.lovelace@example.org" in result.stdout
    assert invoke("subscribers", "add", "bob@example.org").exit_code == 0

    listed = json_of(invoke("subscribers", "list", "--json"))
    assert [s["email"] for s in listed] == ["ada.lovelace@example.org", "bob@example.org"]
    ada = listed[0]
    assert set(ada) == DOCUMENTED_FIELDS
    changing = {"id", "created_at", "confirmed_at", "consent"}
    assert {k: ada[k] for k in DOCUMENTED_FIELDS - changing} == {
        "email": "ada.lovelace@example.org",
        "name": "Ada",
        "status": "active",
        "topics": '"KV cache" retrieval -survey',
        "categories": ["cs.CL", "cs.LG"],
        "follows": [],
        "muted_authors": [],
        "frequency": "weekly",
        "send_hour": 7,
        "send_weekday": "fri",
        "timezone": "Europe/Berlin",
        "max_items": 5,
        "format": "text",
        "unsubscribed_at": None,
        "bounce_count": 0,
        "stopped_by": None,
        "stopped_at": None,
        "suppressed": False,
        "may_mail": True,
    }
    assert ada["confirmed_at"] is not None
    assert ada["consent"]["given_by"] == "admin" and ada["consent"]["ended_at"] is None
    assert listed[1]["status"] == "pending" and listed[1]["confirmed_at"] is None
    # stable JSON: keys sorted
    raw = invoke("subscribers", "list", "--json").stdout
    assert raw.index('"bounce_count"') < raw.index('"categories"') < raw.index('"email"')

    pending = json_of(invoke("subscribers", "list", "--status", "pending", "--json"))
    assert [s["email"] for s in pending] == ["bob@example.org"]

    table = invoke("subscribers", "list").stdout
    assert "2 subscribers" in table
    assert "ada.lovelace@example.org" in table and "weekly fri 07:00" in table
    assert "Europe/Berlin" in table

    shown = _show(invoke, "ADA.LOVELACE@example.org")
    assert shown["subscriber"]["email"] == "ada.lovelace@example.org"
    [event] = shown["events"]
    assert event["action"] == "subscriber.added"
    assert event["actor"] == "cli:subscribers add"
    assert event["detail"]["status"] == "active"
    human = invoke("subscribers", "show", "ada.lovelace@example.org").stdout
    assert "history (newest first" in human and "subscriber.added" in human


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["not-an-email"], "is not a valid email address"),
        (["c@example.org", "--hour", "24"], "hour must be between 0 and 23"),
        (["c@example.org", "--hour", "seven"], "hour must be a whole number"),
        (["c@example.org", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["c@example.org", "--categories", "cs CL"], "category 'cs CL' is not valid"),
        (["c@example.org", "--frequency", "hourly"], "frequency must be one of daily, weekly"),
        (["c@example.org", "--weekday", "funday"], "weekday must be one of"),
        (["c@example.org", "--max-items", "0"], "max items must be between 1 and 100"),
        (["c@example.org", "--format", "pdf"], "format must be one of html, text"),
    ],
)
def test_add_bad_input_one_line_nothing_stored(
    invoke: Invoke, args: list[str], reason: str
) -> None:
    line = _one_error_line(invoke("subscribers", "add", *args))
    assert reason in line
    assert json_of(invoke("subscribers", "list", "--json")) == []


@pytest.mark.backend  # an admin's add, its events on PostgreSQL
def test_existing_and_unsubscribed_addresses_are_not_silently_reactivated(invoke: Invoke) -> None:
    assert invoke("subscribers", "add", "d@example.org", "--confirmed").exit_code == 0
    line = _one_error_line(invoke("subscribers", "add", "D@example.org"))
    assert "already exists (status active)" in line and "subscribers update" in line

    assert invoke("subscribers", "remove", "d@example.org").exit_code == 0
    line = _one_error_line(invoke("subscribers", "add", "d@example.org", "--hour", "9"))
    assert "d@example.org is unsubscribed; add --confirmed" in line
    sub = _show(invoke, "d@example.org")["subscriber"]
    assert (sub["status"], sub["send_hour"]) == ("unsubscribed", 8)

    result = invoke("subscribers", "add", "d@example.org", "--hour", "9", "--confirmed")
    assert result.exit_code == 0 and "re-subscribed" in result.stdout
    shown = _show(invoke, "d@example.org")
    assert (shown["subscriber"]["status"], shown["subscriber"]["send_hour"]) == ("active", 9)
    assert shown["subscriber"]["unsubscribed_at"] is None
    # Re-subscribed and confirmed at once (the admin vouches for the person's consent).
    assert [e["detail"] for e in shown["events"][:2]] == [
        {"from": "pending", "to": "active", "reason": "re-added"},
        {"from": "unsubscribed", "to": "pending", "reason": "re-added", "consent": "admin"},
    ]
    assert shown["consent"]["given_by"] == "admin" and shown["stopped_by"] is None


def test_update_changes_only_given_options_and_audits(invoke: Invoke) -> None:
    invoke("subscribers", "add", "e@example.org", "--categories", "cs.CL", "--confirmed")
    result = invoke("subscribers", "update", "e@example.org", "--hour", "18", "--categories", "")
    assert result.exit_code == 0, result.output
    assert "send_hour 8 → 18" in result.stdout
    shown = _show(invoke, "e@example.org")
    assert (shown["subscriber"]["send_hour"], shown["subscriber"]["categories"]) == (18, [])
    assert shown["subscriber"]["timezone"] == "UTC"  # untouched
    latest = shown["events"][0]
    assert latest["action"] == "subscriber.updated"
    assert latest["actor"] == "cli:subscribers update"
    assert latest["detail"] == {"changes": {"send_hour": [8, 18], "categories": [["cs.CL"], []]}}

    assert (
        "nothing changed" in invoke("subscribers", "update", "e@example.org", "--hour", "18").stdout
    )
    assert len(_show(invoke, "e@example.org")["events"]) == 2
    assert "nothing to update" in _one_error_line(
        invoke("subscribers", "update", "e@example.org"), code=2
    )
    assert "no subscriber 'x@example.org'" in _one_error_line(
        invoke("subscribers", "update", "x@example.org", "--hour", "1")
    )
    assert "unknown time zone" in _one_error_line(
        invoke("subscribers", "update", "e@example.org", "--timezone", "Nowhere/Town")
    )
    assert _show(invoke, "e@example.org")["subscriber"]["timezone"] == "UTC"


def test_suspend_resume(invoke: Invoke) -> None:
    invoke("subscribers", "add", "f@example.org", "--confirmed")
    invoke("subscribers", "add", "g@example.org")  # pending: never confirmed
    assert "now suspended" in invoke("subscribers", "suspend", "f@example.org").stdout
    assert _show(invoke, "f@example.org")["subscriber"]["status"] == "suspended"
    assert "now active" in invoke("subscribers", "resume", "f@example.org").stdout
    events = _show(invoke, "f@example.org")["events"]
    assert [(e["actor"], e["detail"]["to"]) for e in events[:2]] == [
        ("cli:subscribers resume", "active"),
        ("cli:subscribers suspend", "suspended"),
    ]
    # resuming never skips the double opt-in
    invoke("subscribers", "suspend", "g@example.org")
    assert "now pending" in invoke("subscribers", "resume", "g@example.org").stdout
    # an unsubscribed person is not suspended/resumed back into mailing
    invoke("subscribers", "remove", "g@example.org")
    assert "g@example.org is unsubscribed: cannot suspend it" in _one_error_line(
        invoke("subscribers", "suspend", "g@example.org")
    )
    assert "no subscriber" in _one_error_line(invoke("subscribers", "resume", "nobody@example.org"))


@pytest.mark.backend  # the subscriber store's reads on PostgreSQL
def test_remove_keeps_the_record_as_unsubscribed(invoke: Invoke) -> None:
    invoke("subscribers", "add", "h@example.org", "--confirmed")
    result = invoke("subscribers", "remove", "H@example.org")
    assert result.exit_code == 0 and "unsubscribed h@example.org" in result.stdout
    shown = _show(invoke, "h@example.org")
    assert shown["subscriber"]["status"] == "unsubscribed"
    assert shown["subscriber"]["unsubscribed_at"] is not None
    assert shown["events"][0]["detail"] == {
        "from": "active",
        "to": "unsubscribed",
        "reason": "",
        "way": "admin",
        "stopped_by": "admin",
    }
    assert (shown["stopped_by"], shown["may_mail"]) == ("admin", False)
    assert shown["consent"]["ended_by"] == "admin"
    assert shown["events"][0]["actor"] == "cli:subscribers remove"
    assert "already unsubscribed" in invoke("subscribers", "remove", "h@example.org").stdout
    listed = json_of(invoke("subscribers", "list", "--status", "unsubscribed", "--json"))
    assert [s["email"] for s in listed] == ["h@example.org"]


def _all_rows_text(db_url: str) -> str:
    """Every value of every table, as one string: where personal data could hide."""
    engine = sa.create_engine(db_url)
    parts = []
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(parts)


def test_remove_forget_leaves_no_personal_data(invoke: Invoke, db_url: str) -> None:
    invoke("subscribers", "add", "keep@example.org", "--confirmed")
    invoke(
        "subscribers", "add", "forget.me@example.org", "--name", "Forgettable Person",
        "--topics", "my secret hobby", "--confirmed",
    )  # fmt: skip
    invoke("subscribers", "update", "forget.me@example.org", "--name", "F. Person")
    invoke("subscribers", "suspend", "forget.me@example.org")
    forget_id = _show(invoke, "forget.me@example.org")["subscriber"]["id"]
    keep_id = _show(invoke, "keep@example.org")["subscriber"]["id"]
    # a delivery with its entries, as the sending part will have written
    ctx = AppContext(settings=Settings(database_url=db_url))
    now = datetime(2026, 11, 26, tzinfo=UTC)
    with session_scope(ctx.engine) as s:
        entry = Entry(
            canonical_key="arxiv:2611.00001", title="A paper", published_at=now, ingested_at=now
        )
        s.add(entry)
        s.flush()
        for sid in (forget_id, keep_id):
            d = Delivery(
                subscriber_id=sid, period="2026-11-26", message_id=f"<{sid}@digestd>",
                error="550 forget.me@example.org mailbox full" if sid == forget_id else None,
                created_at=now, entry_ids=str(entry.id),
            )  # fmt: skip
            s.add(d)
            s.flush()
    ctx.dispose()
    assert "forget.me@example.org" in _all_rows_text(db_url)
    for email in ("forget.me@example.org", "keep@example.org"):
        liked = invoke("subscribers", "update", email, "--like", "2611.00001")
        assert liked.exit_code == 0, liked.output

    result = invoke("subscribers", "remove", "forget.me@example.org", "--forget")
    assert result.exit_code == 0, result.output
    assert "1 deliveries, 3 events and 1 votes" in result.stdout
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        voters = conn.execute(sa.text("SELECT subscriber_id FROM vote")).scalars().all()
    engine.dispose()
    assert voters == [keep_id]  # their liked papers went with them, the other's stayed

    everything = _all_rows_text(db_url)
    for personal in ("forget.me", "Forgettable", "F. Person", "secret hobby"):
        assert personal not in everything
    assert "keep@example.org" in everything and f"<{keep_id}@digestd>" in everything
    assert "no subscriber" in _one_error_line(
        invoke("subscribers", "show", "forget.me@example.org")
    )
    # the anonymous audit line
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT subscriber_id, actor FROM event WHERE action = 'subscriber.forgotten'")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(None, "cli:subscribers remove")]
    # forgotten means gone: the address may subscribe again from scratch
    assert invoke("subscribers", "add", "forget.me@example.org").exit_code == 0


def test_show_and_list_bad_input(invoke: Invoke) -> None:
    assert "no subscriber 'nobody@example.org'" in _one_error_line(
        invoke("subscribers", "show", "nobody@example.org")
    )
    assert "is not a valid email address" in _one_error_line(invoke("subscribers", "show", "nope"))
    assert "--status must be one of" in _one_error_line(
        invoke("subscribers", "list", "--status", "gone"), code=2
    )


def test_revoke_links_makes_every_earlier_link_invalid(invoke: Invoke, db_url: str) -> None:
    from digestd.core import tokens
    from digestd.core.context import AppContext as Ctx

    invoke("subscribers", "add", "r@example.org", "--confirmed")
    shown = _show(invoke, "r@example.org")["subscriber"]
    ctx = Ctx(settings=Settings(database_url=db_url, secret_key="s" * 32))
    try:
        old = tokens.make_token(ctx.secret_key, "unsubscribe", shown["id"], 1)
        assert "revoked" in invoke("subscribers", "revoke-links", "r@example.org").stdout
        with session_scope(ctx.engine) as session:
            from digestd.core.models import Subscriber

            row = session.get(Subscriber, shown["id"])
            assert row is not None
            claims = tokens.read_token(ctx.secret_key, "unsubscribe", old)
            # the signature still verifies, but the version no longer matches: revoked
            assert claims.token_version != row.token_version
    finally:
        ctx.dispose()
    events = _show(invoke, "r@example.org")["events"]
    assert events[0]["action"] == "subscriber.links_revoked"
    assert "no subscriber" in _one_error_line(
        invoke("subscribers", "revoke-links", "x@example.org")
    )


@pytest.mark.backend  # liked papers, votes on PostgreSQL
def test_like_and_unlike_papers_by_arxiv_id_or_entry_id(invoke: Invoke, db_url: str) -> None:
    invoke("subscribers", "add", "liker@example.org", "--confirmed")
    ctx = AppContext(settings=Settings(database_url=db_url))
    now = datetime(2026, 11, 26, tzinfo=UTC)
    with session_scope(ctx.engine) as s:
        entries = [
            Entry(canonical_key=key, title=title, published_at=now, ingested_at=now)
            for key, title in (
                ("arxiv:2310.06825", "Mistral 7B"),
                ("arxiv:2401.04088", "Mixtral of Experts"),
                ("url:https://example.org/p", "A paper without an arXiv id"),
            )
        ]
        s.add_all(entries)
        s.flush()
        other_id = entries[2].id
    ctx.dispose()
    refs = f"2310.06825,arXiv:2401.04088v2,{other_id}"
    result = invoke("subscribers", "update", "liker@example.org", "--like", refs)
    assert result.exit_code == 0, result.output
    assert "liked papers +3 -0" in result.stdout
    again = invoke("subscribers", "update", "liker@example.org", "--like", "2310.06825")
    assert "nothing changed" in again.stdout
    shown = _show(invoke, "liker@example.org")["votes"]
    assert sorted(v["paper"] for v in shown) == sorted(["2310.06825", "2401.04088", str(other_id)])
    assert {v["vote"] for v in shown} == {"like"}

    unknown = invoke("subscribers", "update", "liker@example.org", "--like", "2312.99999")
    assert unknown.exit_code == 1
    assert "2312.99999" in _one_error_line(unknown) and "not in the database" in unknown.stderr
    assert len(_show(invoke, "liker@example.org")["votes"]) == 3  # nothing half-done

    removed = invoke("subscribers", "update", "liker@example.org", "--unlike", "2401.04088")
    assert removed.exit_code == 0 and "liked papers +0 -1" in removed.stdout
    assert sorted(v["paper"] for v in _show(invoke, "liker@example.org")["votes"]) == sorted(
        ["2310.06825", str(other_id)]
    )


@pytest.mark.backend  # the search: ILIKE on PostgreSQL, LIKE on SQLite
def test_list_search_pages_through_a_large_list_in_80_columns(
    invoke: Invoke, tmp_path: Path
) -> None:
    rows = ["email,name"]
    for i in range(300):
        who = f"ada{i}@lab.example.org,Ada Number {i}" if i % 12 == 0 else f"p{i}@example.org,P {i}"
        rows.append(who)
    rows.append("long.address.of.someone.who.likes.long.names@a-very-long-domain.example.org,X")
    people = tmp_path / "people.csv"
    people.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert invoke("subscribers", "import", str(people)).exit_code == 0

    first = invoke("subscribers", "list", "--search", "ADA", "--limit", "10")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    listed = [line.split()[1] for line in lines[1:-2]]
    assert listed == [f"ada{i}@lab.example.org" for i in range(0, 120, 12)]
    assert lines[-2:] == [
        "1-10 of 25 subscribers matching 'ADA'",
        f"next page: digestd subscribers list --after {10 * 12 - 11} --search ADA --limit 10",
    ]
    # the next page, as the footer says
    after = lines[-1].split("--after ")[1].split()[0]
    second = invoke("subscribers", "list", "--search", "ADA", "--limit", "10", "--after", after)
    assert second.stdout.splitlines()[-2] == "11-20 of 25 subscribers matching 'ADA'"
    last = invoke("subscribers", "list", "--search", "ada", "--after", "229").stdout.splitlines()
    assert last[-1] == "21-25 of 25 subscribers matching 'ada'"  # no next page

    everyone = invoke("subscribers", "list")
    assert max(len(line) for line in everyone.stdout.splitlines()) <= 80
    assert "long.address.of.someone" not in everyone.stdout  # page 1 of 301 rows
    assert everyone.stdout.splitlines()[-2] == "1-50 of 301 subscribers"
    found = json_of(invoke("subscribers", "list", "--search", "Number 1", "--json"))
    assert [s["name"] for s in found] == [
        f"Ada Number {i}" for i in range(0, 300, 12) if str(i).startswith("1")
    ]
    assert len(json_of(invoke("subscribers", "list", "--json"))) == 301
    assert json_of(invoke("subscribers", "list", "--search", "%", "--json")) == []
    # An address of 74 characters is never cut (nor its id or status): the other columns
    # give way, and only its own line (and the header above it) may pass 80 columns.
    long_one = invoke("subscribers", "list", "--search", "long.address")
    address = "long.address.of.someone.who.likes.long.names@a-very-long-domain.example.org"
    [row] = [line for line in long_one.stdout.splitlines() if address in line]
    assert row.split()[:3] == ["301", address, "active"] and "…" not in long_one.stdout
    header, *rest = long_one.stdout.splitlines()
    assert header.split() == ["id", "email", "status"]
    assert all(len(line) <= 80 for line in rest if line != row)
