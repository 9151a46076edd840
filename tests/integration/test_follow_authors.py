"""Followed and muted authors on the real databases: what a preview shows is what is mailed.

A reader follows "Yann LeCun" and mutes "P. Liang": LeCun's papers, however feeds spell
him and however little they score, lead the digest with the reason "by Yann LeCun, whom you
follow"; Liang's paper, the best match of the reader's topics, never appears."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from digestd.core.config import Settings
from digestd.core.context import AppContext
from digestd.core.db import session_scope
from digestd.core.models import Entry, Subscriber
from digestd.delivery import digests
from digestd.delivery.planning import plan_due
from digestd.delivery.sending import send_due
from digestd.ranking.select import Profile, reasons_for
from tests.conftest import FakeClock
from tests.support.digests import add_subscriber, load_seed_entries
from tests.support.smtp import SmtpTestServer

FOLLOW = "by Yann LeCun, whom you follow"
READER = {
    "topics": '"attention heads"',
    "categories": ["cs.CL"],
    "max_items": 5,
    "follows": ["Yann LeCun"],
    "muted_authors": ["P. Liang"],
}
LECUN_TITLES = ["Grasping Soft Objects", "A Note on Energy Models"]
MUTED_TITLE = "Interpretable Attention Heads: Attention Heads Explained"


def add_papers(session: Session, seen: datetime) -> None:
    """The seed papers, LeCun's two (spelled as two feeds do, in a category the reader did
    not tick, no upvotes) and the muted author's best match, all seen at `seen`."""
    load_seed_entries(session, seen)
    for n, (title, authors, cats, upvotes) in enumerate(
        [
            (LECUN_TITLES[0], ["LeCun, Yann", "B. Roboticist"], ["cs.RO"], 0),
            (LECUN_TITLES[1], ["A. Author", "Y. LeCun"], [], 0),
            ("Soil Moisture Maps", ["Yves LeCun"], [], 0),
            (MUTED_TITLE, ["Percy Liang"], ["cs.CL"], 900),
        ]
    ):
        session.add(
            Entry(
                canonical_key=f"test:follow:{n}",
                url=f"https://papers.example.org/follow/{n}",
                title=title,
                summary=f"{title}. We study it.",
                authors=authors,
                categories=cats,
                upvotes=upvotes,
                published_at=seen,
                ingested_at=seen,
            )
        )
    session.flush()


def test_preview_puts_followed_authors_first_and_leaves_muted_ones_out(
    app: AppContext, clock: FakeClock
) -> None:
    with session_scope(app.engine) as s:
        add_papers(s, clock() - timedelta(hours=2))
        sub = add_subscriber(s, "ada@example.org", clock() - timedelta(days=3), **READER)
        picks = digests.preview(s, sub, clock()).selection.picks
        titles = [p.entry.title for p in picks]
        assert set(titles[:2]) == set(LECUN_TITLES)
        assert [p.reasons[0] for p in picks[:2]] == [FOLLOW, FOLLOW]
        assert MUTED_TITLE not in titles and "Soil Moisture Maps" not in titles
        assert len(picks) == 5 and all(p.reason.startswith("matches: ") for p in picks[2:])


async def test_the_mailed_digest_leads_with_followed_authors(
    app: AppContext, clock: FakeClock, smtp_server: SmtpTestServer
) -> None:
    app.settings = Settings(**{**app.settings.__dict__, "smtp_port": smtp_server.port})
    with session_scope(app.engine) as s:
        add_papers(s, clock() - timedelta(hours=2))
        add_subscriber(s, "ada@example.org", clock() - timedelta(days=3), **READER, format="text")
        # A reader with the same topics who follows nobody shares nothing with Ada's digest.
        add_subscriber(
            s,
            "bo@example.org",
            clock() - timedelta(days=3),
            **{**READER, "follows": [], "muted_authors": [], "format": "text"},
        )
    assert plan_due(app).planned == 2
    report = await send_due(app, worker_id="w1")
    assert report.sent == 2
    bodies = {
        str(m.message["To"]): m.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for m in smtp_server.messages
    }
    ada, bo = bodies["ada@example.org"], bodies["bo@example.org"]
    first = min(ada.index(LECUN_TITLES[0]), ada.index(LECUN_TITLES[1]))
    assert FOLLOW in ada and MUTED_TITLE not in ada
    assert first < ada.index("Successor Heads")  # above the topics' best unmuted match
    assert MUTED_TITLE in bo and LECUN_TITLES[0] not in bo and FOLLOW not in bo


def test_digest_view_gives_the_follow_reason_again(app: AppContext, clock: FakeClock) -> None:
    """The reasons a sent digest's web version shows (`reasons_for`) name the follow too."""
    with session_scope(app.engine) as s:
        add_papers(s, clock() - timedelta(hours=2))
        sub = add_subscriber(s, "ada@example.org", clock() - timedelta(days=3), **READER)
        assert isinstance(sub, Subscriber)
        picks = digests.preview(s, sub, clock()).selection
        profile = Profile.for_subscriber(sub, picks.profile.window_start, clock())
        reasons = reasons_for(s, profile, [p.entry for p in picks.picks])
        assert [reasons[p.entry.id or 0] for p in picks.picks] == [p.reason for p in picks.picks]
