"""Checks of digestd's own setup: database and migrations, the public URL and the web
listener, the secret key, and how recently each source was fetched."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import alembic_config, current_revision, redact_url, session_scope
from digestd.doctor.result import Check, fail, ok, warn
from digestd.doctor.smtp import is_local
from digestd.ingest import sources as source_service

LISTENER_TIMEOUT_SECONDS = 3.0
# A source counts as fetched recently within twice its interval plus this slack (a fetch
# that failed and is backing off has its own line).
STALE_SLACK = timedelta(hours=1)


def in_production(settings: Settings) -> bool:
    """Links point somewhere other than this machine: real subscribers will open them."""
    return not is_local(urlsplit(settings.base_url).hostname or "localhost")


def database(ctx: AppContext) -> Check:
    """Reachable, and at the newest migration (doctor never migrates by itself)."""
    from alembic.script import ScriptDirectory

    where = redact_url(ctx.settings.database_url)
    try:
        current = current_revision(ctx.engine)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return fail(
            "database", f"{where}: {reason}", "check DIGESTD_DATABASE_URL and that it is running"
        )
    head = ScriptDirectory.from_config(alembic_config(ctx.engine)).get_current_head()
    if current != head:
        return fail(
            "database",
            f"{where} is at migration {current or 'none'}, this version needs {head}",
            "run `digestd db upgrade` (any command that writes does it too)",
        )
    return ok("database", f"{where}, migrations current ({head})")


def base_url(settings: Settings) -> Check:
    url = settings.base_url
    if in_production(settings) and not url.startswith("https://"):
        return fail(
            "base url",
            f"{url} is plain http: links carry signed tokens and browsers flag the forms",
            "serve the web behind TLS and set DIGESTD_BASE_URL=https://…",
        )
    if not in_production(settings):
        return ok("base url", f"{url} (this machine only: set the public https URL to go live)")
    return ok("base url", url)


def web_listener(settings: Settings) -> Check:
    """DIGESTD_LISTEN answers /healthz (the daemon or `digestd web` must be running)."""
    host = settings.listen_host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{settings.listen_port}/healthz"
    try:
        response = httpx.get(url, timeout=LISTENER_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return warn(
            "web listener",
            f"nothing answers on {settings.listen} ({type(exc).__name__})",
            "start `digestd run` (or `digestd web`): links in digests lead there",
        )
    if response.status_code != 200:
        return fail(
            "web listener",
            f"{url} answered {response.status_code}: {response.text[:120]}",
            "see the daemon's log; `digestd doctor` after fixing it",
        )
    return ok("web listener", f"{settings.listen} answers /healthz")


def secret_key(settings: Settings) -> Check:
    if settings.secret_key:
        return ok("secret key", "DIGESTD_SECRET_KEY is set")
    detail = "generated and kept in the database: a new or restored database breaks every link"
    fix = "set DIGESTD_SECRET_KEY to a long random string (e.g. `openssl rand -base64 32`)"
    if in_production(settings):
        return fail("secret key", detail, fix)
    return warn("secret key", detail, fix)


def sources(ctx: AppContext) -> list[Check]:
    """One line for the healthy sources, one for each that is stale, failing or never fetched."""
    now = ctx.now()
    default = ctx.settings.fetch_interval_minutes
    try:
        with session_scope(ctx.engine) as session:
            rows = [
                (s.id, s.name, s.last_fetch_at, s.last_status, s.last_error, s.failures,
                 source_service.interval(s, default))
                for s in source_service.enabled_sources(session)
            ]  # fmt: skip
    except Exception:  # the database line already says why
        return []
    if not rows:
        return [warn("sources", "no enabled source", "add one: `digestd sources add URL`")]
    checks: list[Check] = []
    healthy = 0
    for sid, name, last, status, error, failures, every in rows:
        label = f"source #{sid} {name}"
        if last is None:
            checks.append(warn(label, "never fetched", "run `digestd sources fetch`"))
        elif now - last > 2 * every + STALE_SLACK:
            checks.append(
                fail(
                    label,
                    f"last fetched {_ago(now, last)} ago (every {_minutes(every)})",
                    "is the daemon running? `digestd sources fetch` fetches now",
                )
            )
        elif status == "error":
            checks.append(
                warn(
                    label,
                    f"failing ({failures} in a row): {(error or '')[:160]}",
                    "check the URL with `digestd sources list`; a failing feed backs off",
                )
            )
        else:
            healthy += 1
    if healthy:
        checks.insert(0, ok("sources", f"{healthy} of {len(rows)} fetched recently"))
    return checks


def _ago(now: datetime, then: datetime) -> str:
    return _minutes(now - then)


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"
