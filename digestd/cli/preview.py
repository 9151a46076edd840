"""`digestd preview EMAIL`: exactly the digest a subscriber would get now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from digestd.cli.common import fail, find_subscriber, get_context, print_json
from digestd.core.db import session_scope
from digestd.core.statuses import SubscriberStatus
from digestd.core.tokens import link, view_url, vote_macs
from digestd.delivery import digests
from digestd.mail.render import Renderer, TemplateProblem, subject_line
from digestd.subscribers.lifecycle import subscriber_dict

FORMATS = ("html", "text", "json")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("preview")
    def preview(
        ctx: typer.Context,
        email: str = typer.Argument(..., help="The subscriber's address."),
        fmt: str = typer.Option(
            "text", "--format", "-f", help="text (default), html (the HTML part) or json."
        ),
        out: Path | None = typer.Option(None, "--out", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Show the digest EMAIL would get now: same window, selection and rendering."""
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        app_ctx = get_context(ctx)
        now = app_ctx.now()
        with session_scope(app_ctx.engine) as session:
            sub = find_subscriber(session, email)
            seen = digests.preview(session, sub, now)
            sub_info = subscriber_dict(sub)
            sub_id, token_version = sub.id, sub.token_version
        chosen, day = seen.selection, seen.coverage.day
        # The period a digest sent now would have (send-now's), for its "View in browser".
        period = seen.coverage.period
        profile, picks = chosen.profile, chosen.picks
        if sub_info["status"] != SubscriberStatus.ACTIVE:
            typer.echo(
                f"note: {email.strip()} is {sub_info['status']}; nothing is sent to them", err=True
            )

        if fmt == "json":
            doc: dict[str, Any] = {
                "subscriber": sub_info,
                "window": {
                    "start": profile.window_start.isoformat(),
                    "end": profile.window_end.isoformat(),
                },
                "period": seen.coverage.period,
                "date": day.isoformat(),
                "subject": subject_line(day, len(picks)) if picks else None,
                "entries": [
                    {
                        "id": p.entry.id,
                        "title": p.entry.title,
                        "url": p.entry.url,
                        "score": p.score,
                        # topic, learned, popularity, freshness: they add up to `score`
                        "score_parts": dict(p.parts),
                        "reason": p.reason,
                    }
                    for p in picks
                ],
            }
            if not picks:
                doc["empty_reason"] = chosen.empty_reason
            _emit(out, doc=doc)
            return
        if not picks:
            typer.echo(f"Nothing to send to {sub_info['email']} now: {chosen.empty_reason}.")
            return
        renderer = Renderer(app_ctx.settings)
        try:
            body = renderer.render_digest(
                profile, picks, day=day, fmt="html" if fmt == "html" else "text"
            )
        except TemplateProblem as exc:
            fail(str(exc))
        base, secret = app_ctx.settings.base_url, app_ctx.secret_key
        assert sub_id is not None
        vote = link(base, secret, "vote", sub_id, token_version)
        mail = renderer.personalize(
            body,
            email=sub_info["email"],
            unsubscribe_url=link(base, secret, "unsubscribe", sub_id, token_version),
            preferences_url=link(base, secret, "preferences", sub_id, token_version),
            view_url=view_url(link(base, secret, "view", sub_id, token_version), period),
            vote_url=vote,
            vote_macs=vote_macs(secret, vote.rpartition("/")[2], body.entry_ids),
        )
        if fmt == "html":
            assert mail.html is not None
            _emit(out, text=mail.html)
        else:
            _emit(out, text=f"Subject: {mail.subject}\nTo: {sub_info['email']}\n\n{mail.text}")


def _emit(out: Path | None, *, text: str | None = None, doc: dict[str, Any] | None = None) -> None:
    if out is None:
        if doc is not None:
            print_json(doc)
        else:
            typer.echo(text, nl=not (text or "").endswith("\n"))
        return
    payload = (
        json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        if doc is not None
        else text or ""
    )
    try:
        out.write_text(payload, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}", err=True)
