"""Issue 22: every illegal subscriber transition is refused with one clear line, from the CLI,
the web, the CSV import and a mail command alike: one table-driven test per entry point,
each reading its expectations from the one table of allowed moves (`statuses.MOVES`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from digestd.core import tokens
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.statuses import MOVES, NEEDS_SUPPRESSED, UNCHANGED, Move, SubscriberStatus
from digestd.inbound.addresses import unsubscribe_address
from digestd.inbound.process import process_message
from digestd.subscribers import lifecycle
from digestd.subscribers.csv_io import COLUMNS
from tests.support.inbound import BOUNCE_ADDRESS, plain
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import Invoke, add_subscriber, change, get_by_email
from tests.support.web import BASE_URL, harness

S = SubscriberStatus
# Every state a subscriber can be in: (status, suppressed). An address is named after it.
STATES = [
    (S.PENDING, False),
    (S.ACTIVE, False),
    (S.SUSPENDED, False),
    (S.UNSUBSCRIBED, False),
    (S.UNSUBSCRIBED, True),  # after a spam complaint
    (S.BOUNCED, True),
]


def email_of(status: SubscriberStatus, suppressed: bool) -> str:
    # Not "bounced@…": an address like a mail system's is never answered (no loops).
    return f"person-{status[:4]}{'-sup' if suppressed else ''}@example.org"


def outcome(move: Move, status: SubscriberStatus, suppressed: bool) -> str:
    """What the table says a move does from a state: refused, unchanged or moved."""
    if status in UNCHANGED[move]:
        return "unchanged"
    need = NEEDS_SUPPRESSED.get(move)
    if status not in MOVES[move] or (need is not None and suppressed != need):
        return "refused"
    return "moved"


def seed(ctx: AppContext) -> None:
    now = ctx.now()
    with session_scope(ctx.engine) as s:
        for status, suppressed in STATES:
            sub = add_subscriber(s, email_of(status, suppressed), status="active", now=now)
            step = None
            if status == S.PENDING:
                sub.status, sub.confirmed_at = S.PENDING, None
            elif status == S.SUSPENDED:
                step = lifecycle.suspend(sub, now=now)
            elif status == S.UNSUBSCRIBED and suppressed:
                step = lifecycle.complain(sub, now=now)
            elif status == S.UNSUBSCRIBED:
                step = lifecycle.unsubscribe(sub, now=now, way="page")
            elif status == S.BOUNCED:
                step = lifecycle.bounce(sub, now=now, reason="5.1.1")
            change(s, sub, step, now=now)


def status_now(ctx: AppContext, email: str) -> tuple[str, bool]:
    with session_scope(ctx.engine) as s:
        sub = get_by_email(s, email)
        assert sub is not None
        return str(sub.status), bool(sub.suppressed)


@pytest.fixture
def seeded(app: AppContext) -> Iterator[AppContext]:
    seed(app)
    yield app


CLI_MOVES = {"confirm": Move.CONFIRM, "suspend": Move.SUSPEND, "resume": Move.RESUME}
CLI_MOVES["lift"] = Move.LIFT


@pytest.mark.parametrize("command", list(CLI_MOVES))
def test_the_cli_refuses_every_illegal_move_with_one_line(
    seeded: AppContext, invoke: Invoke, command: str
) -> None:
    move = CLI_MOVES[command]
    for status, suppressed in STATES:
        email = email_of(status, suppressed)
        before = status_now(seeded, email)
        result = invoke("subscribers", command, email)
        want = outcome(move, status, suppressed)
        case = (command, status, suppressed, result.output)
        if want == "refused":
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.exit_code == 1 and len(lines) == 1, case
            assert lines[0].startswith(f"error: {email} is {status}: "), case
            assert status_now(seeded, email) == before, case
        else:
            assert result.exit_code == 0, case
            assert (status_now(seeded, email) == before) == (want == "unchanged"), case
    # An unsubscribed address is never re-added silently, a bounced one only through lift.
    for status, suppressed in STATES:
        if status not in (S.UNSUBSCRIBED, S.BOUNCED):
            continue
        email = email_of(status, suppressed)
        result = invoke("subscribers", "add", email)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_the_import_refuses_every_illegal_status_with_one_line_per_row(
    seeded: AppContext, invoke: Invoke, tmp_path: Path
) -> None:
    lines = [",".join(COLUMNS)]
    cases = []
    for status, suppressed in STATES:
        email = email_of(status, suppressed)
        for wanted in S:
            cases.append((email, status, suppressed, wanted))
    for email, *_, wanted in cases:
        lines.append(f"{email},,,,daily,8,UTC,10,html,{wanted}")
    path = tmp_path / "statuses.csv"
    # One row per (state, wanted status): rows repeat addresses, so each is its own file.
    for index, (email, status, suppressed, wanted) in enumerate(cases):
        path.write_text(lines[0] + "\n" + lines[index + 1] + "\n", encoding="utf-8")
        before = status_now(seeded, email)
        result = invoke("subscribers", "import", str(path), "--update-existing", "--dry-run")
        with session_scope(seeded.engine) as s:
            sub = get_by_email(s, email)
            assert sub is not None
            refused = lifecycle.admin_refusal(sub, wanted)
        case = (status, suppressed, wanted, result.output)
        if refused is None:
            assert result.exit_code == 0, case
        else:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.exit_code == 1 and len(errors) == 2, case
            assert errors[0] == f"{path}: line 2: {refused}", case
            assert errors[0].count("\n") == 0 and f"{email} is {status}:" in errors[0]
        assert status_now(seeded, email) == before
    # Nothing an admin's file says reopens an unsubscribed or bounced address.
    for status, suppressed in STATES:
        if status in (S.UNSUBSCRIBED, S.BOUNCED):
            with session_scope(seeded.engine) as s:
                sub = get_by_email(s, email_of(status, suppressed))
                assert sub is not None
                assert lifecycle.admin_refusal(sub, S.ACTIVE) is not None


async def test_the_web_refuses_every_illegal_pause_and_resume_with_one_line(
    seeded: AppContext, smtp_server: object
) -> None:
    async with harness(seeded, smtp_server) as web:  # type: ignore[arg-type]
        for status, suppressed in STATES:
            email = email_of(status, suppressed)
            for action, move in (("pause", Move.SUSPEND), ("resume", Move.RESUME)):
                with session_scope(seeded.engine) as s:
                    sub = get_by_email(s, email)
                    assert sub is not None
                    path = tokens.subscriber_link(
                        BASE_URL, seeded.secret_key, "preferences", sub
                    ).removeprefix(BASE_URL)
                before = status_now(seeded, email)
                async with web.client() as client:
                    response = await client.post(
                        path,
                        data={"action": action, "csrf_token": web.form_token("preferences")},
                        headers={"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"},
                    )
                want = outcome(move, status, suppressed)
                if move == Move.SUSPEND and status == S.PENDING:
                    want = "refused"  # a person pauses only a confirmed subscription
                case = (email, action, response.status_code)
                if want == "refused":
                    assert response.status_code == 409, case
                    assert 'class="error" role="alert"' in response.text, case
                    assert status_now(seeded, email) == before, case
                else:
                    assert response.status_code == 200, case
                # The confirmation link of an address that left is refused, never a revival.
            with session_scope(seeded.engine) as s:
                sub = get_by_email(s, email)
                assert sub is not None
                path = tokens.subscriber_link(
                    BASE_URL, seeded.secret_key, "confirm", sub
                ).removeprefix(BASE_URL)
            before = status_now(seeded, email)
            async with web.client() as client:
                response = await client.get(path)
                pressed = await web.press_confirm(client, path)
            if status in (S.UNSUBSCRIBED, S.BOUNCED):
                assert response.status_code == pressed.status_code == 410, email
                assert status_now(seeded, email) == before


def test_mail_to_the_unsubscribe_address_and_commands_refuse_illegal_moves(
    seeded: AppContext, smtp_server: SmtpTestServer
) -> None:
    ctx = AppContext(
        settings=replace(
            seeded.settings, bounce_address=BOUNCE_ADDRESS, smtp_port=smtp_server.port
        ),
        clock=seeded.clock,
        actor="inbound",
    )
    ctx.__dict__["engine"] = seeded.engine
    for status, suppressed in STATES:
        email = email_of(status, suppressed)
        with session_scope(ctx.engine) as s:
            sub = get_by_email(s, email)
            assert sub is not None and sub.id is not None
            address = unsubscribe_address(ctx.settings, ctx.secret_key, sub.id, sub.link_key)
        before = status_now(ctx, email)
        result = process_message(ctx, plain(sender=email, to=address), rcpt_to=[address])
        assert result.kind == "unsubscribe" and "\n" not in result.effect
        if outcome(Move.UNSUBSCRIBE, status, suppressed) == "moved":
            assert result.effect == "unsubscribed", (email, result.effect)
            assert status_now(ctx, email)[0] == "unsubscribed"
        else:
            assert result.effect == f"no change (already {status})", (email, result.effect)
            assert status_now(ctx, email) == before
        # `subscribe` by mail for an address that cannot be mailed: no mail, one line.
        request = f"bounces+request@{BOUNCE_ADDRESS.split('@')[1]}"
        raw = plain(sender=email, to=request, subject="subscribe")
        said = process_message(ctx, raw, mail_from=email, rcpt_to=[request]).effect
        if suppressed:
            assert said == "subscribe: no mail (suppressed or daily limit reached)"
        assert status_now(ctx, email)[1] == suppressed
