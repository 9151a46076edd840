"""One subscriber's story beside their profile (`subscribers show`, issue 27): the last
digests they were sent (date, status, papers, the server's reply) and the mail that came
back about them, as JSON fields and as sections at 80 columns."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from digestd.cli.common import console, short_time
from digestd.cli.tables import Column, print_table
from digestd.delivery import deliveries
from digestd.inbound import store as inbound_store
from digestd.ingest.store import entries_by_id

RECENT = 10  # deliveries and inbound messages shown


def story(session: Session, subscriber_id: int, limit: int = RECENT) -> dict[str, Any]:
    """`deliveries` (newest first: id, period, status, sent_at, papers [{id, title}], reply,
    resend_of) and `inbound` (newest first: id, kind, received_at, action: what it changed,
    or null) of one subscriber."""
    rows = deliveries.list_deliveries(session, subscriber_id=subscriber_id, limit=limit)
    carried = {r.id: deliveries.entry_ids(session, r.id) for r in rows}
    titles = {
        e.id: e.title
        for e in entries_by_id(session, sorted({i for ids in carried.values() for i in ids}))
    }
    return {
        "deliveries": [
            {
                "id": r.id,
                "period": r.period,
                "status": str(r.status),
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "papers": [{"id": i, "title": titles[i]} for i in carried[r.id] if i in titles],
                "reply": r.error,
                "resend_of": r.resend_of,
            }
            for r in rows
        ],
        "inbound": [
            {
                "id": m.id,
                "kind": m.kind,
                "received_at": m.received_at.isoformat(),
                "action": m.effect or None,
            }
            for m in inbound_store.for_subscriber(session, subscriber_id, limit)
        ],
    }


def print_story(data: dict[str, Any], *, wide: bool = False) -> None:
    """The two sections, each a short table at 80 columns (`wide`: every column, one line a
    row)."""
    from datetime import datetime

    def when(value: str | None) -> str:
        return short_time(datetime.fromisoformat(value)) if value else "-"

    sent = data["deliveries"]
    console.print(
        f"deliveries (newest first, up to {RECENT})" if sent else "deliveries: none yet",
        style="bold",
        highlight=False,
    )
    if sent:
        print_table(
            [
                Column("id", keep=True, right=True),
                Column("period", priority=1),
                Column("sent", priority=2),
                Column("status", keep=True),
                Column("papers", keep=True, right=True),
                Column("reply", wrap=True, priority=3),
            ],
            [
                [
                    str(d["id"]),
                    d["period"],
                    when(d["sent_at"]),
                    d["status"],
                    str(len(d["papers"])),
                    d["reply"] or ("resend of " + str(d["resend_of"]) if d["resend_of"] else ""),
                ]
                for d in sent
            ],
            wide=wide,
            more="--wide or digestd deliveries show ID",
        )
    came = data["inbound"]
    console.print(
        "mail about them (newest first)" if came else "mail about them: none",
        style="bold",
        highlight=False,
    )
    if came:
        print_table(
            [
                Column("id", keep=True, right=True),
                Column("received", priority=1),
                Column("kind", keep=True),
                Column("what it changed", wrap=True, keep=True),
            ],
            [
                [str(m["id"]), when(m["received_at"]), m["kind"], m["action"] or "nothing"]
                for m in came
            ],
            wide=wide,
            more="--wide or digestd inbound show ID",
        )
