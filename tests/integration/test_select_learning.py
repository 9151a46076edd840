"""Digests that learn, on the real seed papers: votes and liked papers change the next digest
(sent through the real pipeline to a real SMTP server). Ranks are asserted, never scores."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Delivery, Entry, Subscriber
from digestd.delivery.deliveries import entry_ids
from digestd.delivery.digests import preview
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.subscribers import vote_store as votes
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer
from tests.support.subscribers import json_of, make_invoke
from tests.support.web import text_part

NOW = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
# Mechanistic interpretability: a subject among the seed papers, told by its titles.
SUBJECT = re.compile(r"circuit|interpret|mechanis", re.IGNORECASE)
# The two papers voted on, from an earlier digest (they are not in the new window).
VOTED = ("Mechanistic Interpretation through Contextual Decomposition", "Does Circuit Analysis")


@pytest.fixture
def learn_app(app: AppContext, smtp_server: SmtpTestServer, clock) -> AppContext:
    """The seed papers: the two voted ones in yesterday's window, the rest new today."""
    clock.set(NOW)
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    with session_scope(app.engine) as s:
        for entry in load_seed_entries(s, NOW - timedelta(hours=2)):
            if entry.title.startswith(VOTED):
                entry.ingested_at = entry.published_at = NOW - timedelta(days=2)
                s.add(entry)
    return app


def voted_ids(app: AppContext) -> list[int]:
    with session_scope(app.engine) as s:
        rows = s.exec(select(Entry)).all()
        return [e.id for e in rows if e.title.startswith(VOTED)]  # type: ignore[misc]


def subscribe(app: AppContext, email: str, **prefs: object) -> int:
    prefs.setdefault("send_hour", 8)
    with session_scope(app.engine) as s:
        return add_subscriber(s, email, NOW - timedelta(days=10), **prefs).id  # type: ignore[return-value]


def vote(app: AppContext, sub_id: int, value: int, *, interest: bool = False) -> None:
    with session_scope(app.engine) as s:
        for entry_id in voted_ids(app):
            votes.cast(s, sub_id, entry_id, value, now=NOW - timedelta(days=1), interest=interest)


async def send(app: AppContext) -> dict[int, list[str]]:
    """Plan and send everything due; the titles each subscriber got, in rank order."""
    await asyncio.to_thread(plan_due, app)
    await send_due(app, worker_id="test")
    with session_scope(app.engine) as s:
        titles = dict(s.exec(select(Entry.id, Entry.title)).all())
        got: dict[int, list[str]] = {}
        for delivery_id, sub_id in s.exec(
            select(Delivery.id, Delivery.subscriber_id).order_by(Delivery.subscriber_id)
        ).all():
            for entry_id in entry_ids(s, delivery_id):  # type: ignore[arg-type]
                got.setdefault(sub_id, []).append(titles[entry_id])
    return got


def on_subject(titles: list[str]) -> int:
    return sum(1 for t in titles if SUBJECT.search(t))


async def test_liking_two_papers_brings_more_of_their_subject_than_the_same_topic_alone(
    learn_app: AppContext, smtp_server: SmtpTestServer
) -> None:
    plain = subscribe(learn_app, "plain@example.org", topics="models", max_items=5)
    learner = subscribe(learn_app, "learner@example.org", topics="models", max_items=5)
    vote(learn_app, learner, votes.UP)
    got = await send(learn_app)
    assert on_subject(got[learner]) >= on_subject(got[plain]) + 2
    assert SUBJECT.search(got[learner][0])  # the top pick is on the liked subject
    assert not any(t.startswith(VOTED) for t in got[learner])  # voted papers never come back
    # The reason line says why, naming a liked paper.
    [mail] = [m for m in smtp_server.messages if m.recipients == ["learner@example.org"]]
    assert re.search(r'Why: like "(Mechanistic|Does Circuit)[^"]*" you liked', text_part(mail))


async def test_less_like_this_pushes_a_subject_out(learn_app: AppContext) -> None:
    plain = subscribe(learn_app, "plain@example.org", topics="language models", max_items=5)
    tired = subscribe(learn_app, "tired@example.org", topics="language models", max_items=5)
    wide = subscribe(learn_app, "wide@example.org", topics="language models", max_items=30)
    vote(learn_app, tired, votes.DOWN)
    got = await send(learn_app)
    assert on_subject(got[plain]) >= 2
    assert on_subject(got[tired]) == 0
    # What is left is still about the topic (papers the topic ranking has), and as many:
    # a dislike pushes papers down, never out of a digest.
    assert len(got[tired]) == 5
    assert set(got[tired]) <= set(got[wide])


async def test_liked_papers_alone_rank_by_similarity_not_trending(learn_app: AppContext) -> None:
    trending = subscribe(learn_app, "trending@example.org", topics="", max_items=5)
    fan = subscribe(learn_app, "fan@example.org", topics="", max_items=5)
    vote(learn_app, fan, votes.UP, interest=True)
    with session_scope(learn_app.engine) as s:
        sub = s.get(Subscriber, fan)
        assert sub is not None
        chosen = preview(s, sub, NOW).selection
    assert all("you liked" in p.reason for p in chosen.picks[:3])
    got = await send(learn_app)
    assert on_subject(got[fan]) >= 4
    assert on_subject(got[trending]) <= 3
    assert got[fan][:3] != got[trending][:3]


async def test_old_votes_fade(learn_app: AppContext) -> None:
    plain = subscribe(learn_app, "plain@example.org", topics="models", max_items=5)
    old = subscribe(learn_app, "old@example.org", topics="models", max_items=5)
    with session_scope(learn_app.engine) as s:
        for entry_id in voted_ids(learn_app):
            votes.cast(s, old, entry_id, votes.UP, now=NOW - timedelta(days=400))
    got = await send(learn_app)
    assert got[old] == got[plain]


@pytest.mark.backend  # the preview's reads on PostgreSQL
def test_preview_json_shows_score_parts_and_reason(learn_app: AppContext, db_url: str) -> None:
    fan = subscribe(learn_app, "fan@example.org", topics="models", max_items=4)
    vote(learn_app, fan, votes.UP)
    invoke = make_invoke(db_url)
    with time_machine.travel(NOW, tick=False):  # the command reads the real clock
        doc = json_of(invoke("preview", "fan@example.org", "--format", "json"))
    entries = doc["entries"]
    assert entries and all(
        set(e["score_parts"]) == {"topic", "learned", "popularity", "freshness"} for e in entries
    )
    assert all(abs(sum(e["score_parts"].values()) - e["score"]) < 0.001 for e in entries)
    assert entries[0]["score_parts"]["learned"] > 0
    assert "you liked" in entries[0]["reason"]
    json.dumps(doc)  # plain JSON


def test_a_voter_s_reasons_name_the_same_topic_matches_as_the_shared_ranking(
    learn_app: AppContext,
) -> None:
    # A voter is ranked on their own, but which topic clauses a paper matched is the same
    # rule as for everyone: the "matches: …" part of a paper's reason must not differ.
    plain = subscribe(learn_app, "plain@example.org", topics="language models, attention")
    fan = subscribe(learn_app, "fan@example.org", topics="language models, attention")
    vote(learn_app, fan, votes.UP)

    def matches(sub_id: int) -> dict[int, str]:
        with session_scope(learn_app.engine) as s:
            sub = s.get(Subscriber, sub_id)
            assert sub is not None
            picks = preview(s, sub, NOW).selection.picks
        found = {p.entry.id or 0: re.search(r"matches: [^·]*", p.reason) for p in picks}
        return {k: m.group(0).strip() for k, m in found.items() if m}

    shared, own = matches(plain), matches(fan)
    both = shared.keys() & own.keys()
    assert len(both) >= 2, (shared, own)
    assert {k: own[k] for k in both} == {k: shared[k] for k in both}
