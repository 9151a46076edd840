"""`digestd deliveries resend ID` and `digestd send-now EMAIL --again`: the same digest (same
papers, same window) as a new message with a new Message-ID, recorded as a resend of the
first (`delivery.resend_of`), for a reader whose digest never arrived.

Refused, with the reason, for anyone who may not be mailed; a digest that was never sent
has nothing to repeat (a waiting one goes out with `deliveries retry`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from sqlmodel import Session

from digestd.cli.common import (
    EX_PROBLEM,
    EX_TEMPFAIL,
    console,
    fail,
    first_line,
    get_context,
    print_json,
    temporary,
)
from digestd.cli.progress import SendProgress
from digestd.cli.tables import say
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Subscriber
from digestd.core.statuses import DeliveryStatus, MailKind
from digestd.delivery import deliveries
from digestd.subscribers.lifecycle import may_mail, refusal

D = DeliveryStatus


def refusal_to_mail(sub: Subscriber) -> str | None:
    """Why this subscriber may not be sent a digest now (the subscriber core's rule,
    `may_mail`, and its words), or None when they may."""
    if may_mail(sub, MailKind.DIGEST):
        return None
    return str(refusal(sub, "send a digest to"))


def plan_resends(
    session: Session, app: AppContext, original_ids: list[int]
) -> list[dict[str, Any]]:
    """A resend planned for each delivery (one line and exit 1 for the first that cannot
    be: unknown, never sent, or a subscriber who may not be mailed)."""
    planned = []
    domain = deliveries.message_id_domain(app.settings.from_address)
    for original_id in original_ids:
        found = deliveries.get(session, original_id)
        if found is None:
            fail(f"no delivery {original_id}")
        if found.status != D.SENT:
            fail(
                f"delivery {original_id} is {found.status}: only a sent digest can be sent "
                "again (a waiting one goes out with `digestd deliveries retry`)"
            )
        sub = session.get(Subscriber, found.subscriber_id)
        why = refusal_to_mail(sub) if sub is not None else "the subscriber is gone"
        if why:
            fail(f"not resent to {found.email}: {why}")
        new_id = deliveries.plan_resend(session, original_id, now=app.now(), domain=domain)
        assert new_id is not None
        planned.append(
            {
                "id": new_id,
                "resend_of": original_id,
                "email": found.email,
                "period": found.period,
                "papers": found.entry_count,
            }
        )
    return planned


def latest_sent(session: Session, sub: Subscriber) -> int:
    """The id of the newest digest sent to `sub` (`send-now EMAIL --again`), or exit 1."""
    assert sub.id is not None
    rows = deliveries.list_deliveries(session, status=D.SENT, subscriber_id=sub.id, limit=1)
    if not rows:
        fail(f"no digest was sent to {sub.email} yet: `digestd send-now {sub.email}` sends one")
    return rows[0].id


def send_resends(
    ctx_app: AppContext, planned: list[dict[str, Any]], *, quiet: bool, as_json: bool
) -> None:
    """Send what is due now (the resends with it), print what happened, exit as documented
    (75 when the relay is down: the resends wait for a retry)."""
    from digestd.cli.run import echo_problem, exit_for
    from digestd.delivery.sending import send_due

    for p in planned:
        if not as_json:
            say(
                f"delivery {p['id']}: the digest of delivery {p['resend_of']} ({p['period']}, "
                f"{p['papers']} papers) again to {p['email']}, with a new Message-ID"
            )
    try:
        with SendProgress(ctx_app, quiet=quiet) as progress:
            report = asyncio.run(
                send_due(ctx_app, worker_id=deliveries.new_worker_id(), progress=progress)
            )
    except Exception as exc:
        fail(f"resend: {first_line(exc)}", EX_TEMPFAIL if temporary(exc) else EX_PROBLEM)
    if as_json:
        with session_scope(ctx_app.engine) as session:
            rows = [deliveries.get(session, p["id"]) for p in planned]
        print_json(
            {
                "resends": [
                    {
                        "id": r.id,
                        "resend_of": r.resend_of,
                        "email": r.email,
                        "status": r.status,
                        "message_id": r.message_id,
                    }
                    for r in rows
                    if r is not None
                ],
                "send": {
                    "sent": report.sent,
                    "retry": report.retry,
                    "failed": report.failed,
                    "skipped": report.skipped,
                },
            }
        )
    else:
        console.print(
            f"sent {report.sent}, retry later {report.retry}, failed {report.failed}, "
            f"skipped {report.skipped}",
            highlight=False,
        )
        echo_problem(report)
    exit_for(report)


def resend_deliveries(
    ctx: typer.Context, original_ids: list[int], *, quiet: bool, as_json: bool
) -> None:
    """`deliveries resend ID...`: plan every resend (all or none), then send."""
    app = get_context(ctx)
    with session_scope(app.engine) as session:
        planned = plan_resends(session, app, original_ids)
    send_resends(app, planned, quiet=quiet, as_json=as_json)
