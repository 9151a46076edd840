"""The public pages: today's trending papers under the subscribe form, earlier days, feeds.

Public means papers only, never subscribers. Every route answers conditional GETs (see
`caching`): one aggregate query decides the validators, and a 304 (or a cached body) is
answered without loading a paper or rendering anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from digestd import __version__
from digestd.core.db import read_scope
from digestd.ingest.store import WindowStamp, days_with_entries, window_stamp
from digestd.mail.mime import one_line
from digestd.mail.subject import date_label
from digestd.ranking.trending import (
    DAY,
    day_start,
    day_window,
    feed_days,
    feed_window,
    papers_between,
    today_window,
)
from digestd.web import feeds, forms
from digestd.web.caching import Validators, conditional
from digestd.web.responses import render_html, state
from digestd.web.state import WebState

router = APIRouter()
log = logging.getLogger(__name__)

# Pages carry the subscribe form, whose signed token is good for a day (csrf.py): a copy
# is revalidated on every view, and its ETag changes every FORM_EPOCH, so a browser never
# keeps a form older than that (a 304 would reuse it).
FORM_EPOCH = timedelta(hours=6)
PAGE_CACHE_CONTROL = "public, no-cache"
FEED_CACHE_CONTROL = "public, max-age=300"
HTML = "text/html; charset=utf-8"
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def _settings_key(web: WebState) -> tuple[object, ...]:
    s = web.ctx.settings
    return (__version__, s.base_url, s.page_title, s.page_blurb, s.page_size, s.feed_days)


def _form_epoch(now: datetime) -> datetime:
    return EPOCH_START + FORM_EPOCH * ((now - EPOCH_START) // FORM_EPOCH)


def _last_modified(stamp: WindowStamp, floor: datetime) -> datetime:
    """The newest change a page shows: an entry in, updated, or out, or `floor` (the page's
    own moments of change: midnight for the date, the form epoch)."""
    return max(t for t in (stamp.changed_at, stamp.left_at, floor) if t is not None)


def _parse_day(raw: str, now: datetime) -> date:
    if not _DAY_RE.match(raw):
        raise HTTPException(400, f"A day looks like 2026-11-26, got {raw[:40]!r}")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, f"There is no day {raw!r}") from None
    if day > now.astimezone(UTC).date():
        raise HTTPException(404, f"{raw} has not happened yet")
    return day


def _parse_page(raw: str | None) -> int:
    """`?page=N` (1 when absent); a bad value is a 400 with one line."""
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise HTTPException(400, f"A page is a number from 1, got {raw[:20]!r}")
    return int(raw)


def _page(
    request: Request,
    web: WebState,
    *,
    key: tuple[object, ...],
    last_modified: datetime,
    build: Callable[[], str],
) -> Response:
    validators = Validators.of((*key, _settings_key(web)), last_modified)
    return conditional(
        request,
        web.pages,
        validators,
        lambda: build().encode("utf-8"),
        media_type=HTML,
        cache_control=PAGE_CACHE_CONTROL,
    )


def _trending_page(
    request: Request,
    web: WebState,
    start: datetime,
    end: datetime,
    day: date | None,
    page: int = 1,
) -> Response:
    """Today (`day` None: the sliding last-day window) or one archive day, one page of
    DIGESTD_PAGE_SIZE papers (`page` from 1) with links to the others."""
    ctx, settings = web.ctx, web.ctx.settings
    now = ctx.now()
    epoch = _form_epoch(now)
    today = now.astimezone(UTC).date()
    shown = day or today
    heading = (
        f"Trending today · {date_label(now)}" if day is None else f"Trending on {date_label(shown)}"
    )

    size = settings.page_size
    offset = (page - 1) * size
    base = "/" if day is None else f"/archive/{shown.isoformat()}"

    def page_url(n: int) -> str:
        return base if n == 1 else f"{base}?page={n}"

    def build(papers: list[dict[str, Any]] | None, total: int = 0) -> str:
        pages = max(1, -(-total // size))
        return render_html(
            request,
            "trending.html",
            page_title=settings.page_title,
            page_blurb=settings.page_blurb,
            heading=heading,
            papers=papers or [],
            unavailable=papers is None,
            is_today=day is None,
            offset=offset,
            total=total,
            page=page,
            pages=pages,
            prev_url=page_url(page - 1) if page > 1 else None,
            next_url=page_url(page + 1) if page < pages else None,
            values={},
            errors={},
            categories=forms.COMMON_CATEGORIES,
            timezones=forms.COMMON_TIMEZONES,
            weekdays=forms.WEEKDAY_NAMES,
        )

    try:
        with read_scope(ctx.engine) as session:
            stamp = window_stamp(session, start, end, span=DAY if day is None else None)
    except SQLAlchemyError as exc:
        # The database is down: the form still shows (sign-ups are answered once it is
        # back); the papers say they are unavailable. Not cacheable.
        log.warning("trending page without papers: %s", one_line(str(exc))[:200])
        return HTMLResponse(build(None), headers={"Cache-Control": "no-store"})

    if page > 1 and offset >= stamp.count:
        raise HTTPException(404, f"There is no page {page} of this day")

    def build_current() -> str:
        with read_scope(ctx.engine) as session:
            return build(papers_between(session, start, end, size, offset), stamp.count)

    key = ("trending", day is None, shown, page, stamp.key(), epoch)
    floor = max(epoch, day_start(today)) if day is None else epoch
    return _page(
        request, web, key=key, last_modified=_last_modified(stamp, floor), build=build_current
    )


@router.get("/", summary="Today's trending papers and the subscribe form", response_class=Response)
def index(
    request: Request,
    day: str | None = Query(None, alias="date"),
    page: str | None = Query(None, description="a page of DIGESTD_PAGE_SIZE papers, from 1"),
) -> Response:
    """Today's trending papers under the subscribe form; `?date=YYYY-MM-DD` for an earlier
    day, `?page=N` for the next papers. Works without JavaScript (the one script only
    pre-selects the time zone)."""
    web = state(request)
    now = web.ctx.now()
    number = _parse_page(page)
    if day:
        parsed = _parse_day(day, now)
        return _trending_page(request, web, *day_window(parsed), parsed, number)
    return _trending_page(request, web, *today_window(now), None, number)


@router.get(
    "/archive/{day}", summary="The trending papers of an earlier day", response_class=Response
)
def archive_day(
    request: Request,
    day: str,
    page: str | None = Query(None, description="a page of DIGESTD_PAGE_SIZE papers, from 1"),
) -> Response:
    """One day's trending papers (UTC day), ranked as on the home page, a page at a time."""
    web = state(request)
    number = _parse_page(page)
    parsed = _parse_day(day, web.ctx.now())
    return _trending_page(request, web, *day_window(parsed), parsed, number)


@router.get("/archive", summary="The days that have papers", response_class=Response)
def archive(request: Request) -> Response:
    """Every day with papers, newest first, each linking to its list."""
    web = state(request)
    ctx = web.ctx
    now = ctx.now()
    with read_scope(ctx.engine) as session:
        stamp = window_stamp(session, EPOCH_START, now)
    floor = day_start(now.astimezone(UTC).date())

    def build() -> str:
        with read_scope(ctx.engine) as session:
            days = days_with_entries(session)
        return render_html(request, "archive.html", days=days, day_label=date_label)

    return _page(
        request,
        web,
        key=("archive", floor, stamp.key()),
        last_modified=_last_modified(stamp, floor),
        build=build,
    )


def _feed(request: Request, kind: str) -> Response:
    web = state(request)
    ctx, settings = web.ctx, web.ctx.settings
    now = ctx.now()
    start, end = feed_window(now, settings.feed_days)
    with read_scope(ctx.engine) as session:
        stamp = window_stamp(session, start, end)
    last_modified = _last_modified(stamp, day_start(now.astimezone(UTC).date()))
    validators = Validators.of((kind, start, stamp.key(), _settings_key(web)), last_modified)

    def build() -> bytes:
        with read_scope(ctx.engine) as session:
            days = feed_days(session, now, settings.feed_days, settings.page_size)
        if kind == "rss":
            return feeds.rss(settings, days, last_modified)
        return feeds.json_feed(settings, days)

    return conditional(
        request,
        web.pages,
        validators,
        build,
        media_type=feeds.RSS_TYPE if kind == "rss" else feeds.JSON_FEED_TYPE,
        cache_control=FEED_CACHE_CONTROL,
    )


@router.get("/feed.xml", summary="Trending papers as RSS 2.0", response_class=Response)
def feed_xml(request: Request) -> Response:
    """The last DIGESTD_FEED_DAYS days of trending papers, guid = the paper's key."""
    return _feed(request, "rss")


@router.get("/feed.json", summary="Trending papers as JSON Feed 1.1", response_class=Response)
def feed_json(request: Request) -> Response:
    """The same items as /feed.xml, as JSON Feed 1.1."""
    return _feed(request, "json")
