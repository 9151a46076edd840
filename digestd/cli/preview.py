"""`digestd preview EMAIL`: exactly the digest a subscriber gets next, built by the path that
builds the mail (`delivery.compose`): the same papers, reasons, links and vote links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from digestd.cli.common import fail, find_subscriber, get_context, print_json, usage
from digestd.core.db import session_scope
from digestd.core.statuses import SubscriberStatus
from digestd.delivery import compose, digests
from digestd.delivery.deliveries import message_id_domain
from digestd.mail.render import Renderer, TemplateProblem, digest_subject, paper_fields
from digestd.subscribers.queries import subscriber_dict

# eml: the whole message as it would be handed to the SMTP server (without DKIM).
FORMATS = ("html", "text", "json", "eml")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("preview")
    def preview(
        ctx: typer.Context,
        email: str = typer.Argument(..., help="The subscriber's address."),
        fmt: str = typer.Option(
            "text",
            "--format",
            "-f",
            help="text (default), html (the HTML part), json, or eml (the whole message).",
        ),
        out: Path | None = typer.Option(None, "--out", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Show the digest EMAIL gets next (a planned one waiting to be sent, or the one
        sent now): same window, selection, links and rendering as the mail."""
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            usage(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        app_ctx = get_context(ctx)
        now = app_ctx.now()
        with session_scope(app_ctx.engine) as session:
            sub = find_subscriber(session, email)
            seen = digests.preview(session, sub, now)
            sub_info = subscriber_dict(sub)
            session.expunge(sub)
        chosen, cover, waiting = seen.selection, seen.coverage, seen.waiting
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
                "period": cover.period,
                "date": cover.day.isoformat(),
                # The planned delivery this digest is, when one is waiting (else null).
                "delivery": None
                if waiting is None
                else {
                    "id": waiting.id,
                    "status": waiting.status,
                    "attempts": waiting.attempts,
                    "message_id": waiting.message_id,
                },
                # The mail's subject (a contract: scripts read it).
                "subject": digest_subject(cover.day, [p.entry for p in picks]) if picks else None,
                "entries": [
                    {
                        "id": p.entry.id,
                        "title": p.entry.title,
                        "url": p.entry.url,
                        "score": p.score,
                        # topic, learned, popularity, freshness: they add up to `score`
                        "score_parts": dict(p.parts),
                        "reason": p.reason,
                        # the sentence of the abstract stating the contribution (contract)
                        "gist": paper_fields(p.entry)["gist"],
                        # the reason's facts, one string each (contract)
                        "reasons": p.reasons,
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
        # The subscriber's own format, as the mail; an HTML preview of a text-only
        # subscriber renders the HTML they would get if they switched.
        kind = "html" if fmt == "html" else sub.format
        try:
            digest = compose.build_digest(app_ctx, renderer, profile, picks, cover.day, kind)
        except TemplateProblem as exc:
            fail(str(exc))
        domain = message_id_domain(app_ctx.settings.from_address)
        message_id = (
            waiting.message_id if waiting is not None else f"<preview.{cover.period}@{domain}>"
        )
        mail = compose.message(
            app_ctx, renderer, digest, sub, period=cover.period, message_id=message_id, when=now
        )
        if fmt == "eml":
            _emit(out, text=mail.as_string())
            return
        part = mail.get_body(("html",) if fmt == "html" else ("plain",))
        assert part is not None
        content = _lines(part.get_content())
        if fmt == "html":
            _emit(out, text=content)
        else:
            _emit(out, text=f"Subject: {mail['Subject']}\nTo: {sub_info['email']}\n\n{content}")


def _lines(text: str) -> str:
    """A part's text with the newlines of this system (the wire has CRLF)."""
    return text.replace("\r\n", "\n")


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
