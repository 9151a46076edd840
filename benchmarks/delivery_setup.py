"""The data bench_delivery.py sends to: N subscribers over P preference profiles, votes on
earlier papers, a JSON Feed of E papers, and the settings of a run (split from bench_delivery.py,
which times the run; `setup` runs in its child process so the timed process's memory is its own)."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

TOPICS = [
    "diffusion",
    "language model",
    "vision",
    "reinforcement learning",
    "fine-tuning",
    "3D",
    "video",
    "agent",
    "reasoning",
    "retrieval",
    "benchmark",
    "segmentation",
    "transformer",
    "multimodal",
    "graph",
    "robot",
    "speech",
    "code",
    "efficient",
    "alignment",
]
CATEGORIES = ["cs.CV", "cs.CL", "cs.LG", "cs.AI", "cs.RO", "stat.ML", "cs.IR", "eess.AS", "cs.SE"]


def profile_columns(j: int) -> dict[str, object]:
    """The j-th distinct preference profile (topics × category × size)."""
    cat = (j // len(TOPICS)) % (len(CATEGORIES) + 1)
    return {
        "topics": TOPICS[j % len(TOPICS)],
        "categories": [] if cat == len(CATEGORIES) else [CATEGORIES[cat]],
        "max_items": 5 + (j // (len(TOPICS) * (len(CATEGORIES) + 1))) % 11,
    }


def write_feed(path: Path, entries: int, now: datetime) -> None:
    """A JSON Feed of `entries` papers made from the seed papers (unique ids, tags, upvotes)."""
    seed = json.loads((REPO / "seeds" / "trending-papers.json").read_text(encoding="utf-8"))
    base = seed["items"]
    items = []
    for i in range(entries):
        src = base[i % len(base)]
        round_ = i // len(base)
        items.append(
            {
                "id": f"bench:{i}",
                "url": f"https://example.org/papers/{i}",
                "title": src["title"] + (f" (part {round_ + 1})" if round_ else ""),
                "content_text": src.get("content_text", ""),
                "date_published": (now - timedelta(minutes=i + 5)).isoformat(),
                "authors": [{"name": f"Author {i % 97}"}, {"name": f"Author {i % 89}"}],
                "tags": [CATEGORIES[i % len(CATEGORIES)], CATEGORIES[(i * 7) % len(CATEGORIES)]],
                "_paper": {"upvotes": (i * 37) % 400, "code_url": f"https://github.com/x/{i}"},
            }
        )
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "bench", "items": items}
    path.write_text(json.dumps(feed), encoding="utf-8")


def add_subscribers(ctx: Any, count: int, profiles: int, now: datetime) -> None:
    """`count` active subscribers, round-robin over `profiles` profiles (streamed inserts)."""
    from sqlalchemy import insert

    from digestd.core.db import session_scope
    from digestd.core.models import Subscriber

    chunk = 5000
    for first in range(0, count, chunk):
        rows = [
            {
                "email": f"reader{i:07d}@example.org",
                "name": "",
                "status": "active",
                "frequency": "daily",
                "send_hour": 0,
                "send_weekday": 0,
                "timezone": "UTC",
                "format": "html",
                "created_at": now,
                "confirmed_at": now,
                "bounce_count": 0,
                "token_version": 1,
                **profile_columns(i % profiles),
            }
            for i in range(first, min(first + chunk, count))
        ]
        with session_scope(ctx.engine) as session:
            session.execute(insert(Subscriber), rows)


OLD_PAPERS = 300


def add_votes(ctx: Any, args: argparse.Namespace, now: datetime) -> tuple[int, int]:
    """Earlier papers (outside the digest window) and votes of a share of the subscribers on
    them; returns (voters, votes)."""
    import random

    from sqlalchemy import insert, select

    from digestd.core.db import session_scope
    from digestd.core.models import Entry, Subscriber, Vote

    if args.voters <= 0:
        return 0, 0
    rng = random.Random(12)
    seed = json.loads((REPO / "seeds" / "trending-papers.json").read_text(encoding="utf-8"))
    base = seed["items"]
    lo, hi = (int(x) for x in args.votes_per_voter.split("-"))
    earlier = now - timedelta(days=3)
    with session_scope(ctx.engine) as session:
        session.execute(
            insert(Entry),
            [
                {
                    "canonical_key": f"old:{i}",
                    "url": f"https://example.org/old/{i}",
                    "title": base[i % len(base)]["title"] + f" (earlier {i})",
                    "summary": base[i % len(base)].get("content_text", ""),
                    "summary_html": "",
                    "authors": [],
                    "categories": [CATEGORIES[i % len(CATEGORIES)]],
                    "keywords": [],
                    "published_at": earlier,
                    "ingested_at": earlier,
                    "upvotes": 0,
                    "comments": 0,
                    "version": 1,
                }
                for i in range(OLD_PAPERS)
            ],
        )
        old_ids = list(session.scalars(select(Entry.id).where(Entry.ingested_at <= earlier)))
        sub_ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
    voters = rng.sample(sub_ids, int(len(sub_ids) * args.voters))
    total = 0
    # Streamed in chunks of voters: the setup must not inflate the peak RSS it reports.
    for first in range(0, len(voters), 500):
        rows = [
            {
                "subscriber_id": sub_id,
                "entry_id": entry_id,
                "value": 1 if rng.random() < 0.7 else -1,
                "interest": False,
                "created_at": now - timedelta(days=rng.uniform(0, 60)),
            }
            for sub_id in voters[first : first + 500]
            for entry_id in rng.sample(old_ids, rng.randint(lo, hi))
        ]
        with session_scope(ctx.engine) as session:
            session.execute(insert(Vote), rows)
        total += len(rows)
    return len(voters), total


def bench_settings(args: argparse.Namespace, tmp: Path, smtp_port: int = 25) -> Any:
    """The settings of both processes: the setup's and the measured one's."""
    from digestd.core.config import Settings

    signing: dict[str, Any] = {}
    if args.sign or args.sign_ed25519:
        from digestd.mail.dkim_keys import keygen

        keys = keygen(tmp / "dkim", "bench", "example.org", ed25519_key=args.sign_ed25519)
        signing = {"dkim_key_file": keys[0].path, "dkim_selector": "bench"}
        if args.sign_ed25519:
            signing["dkim_ed25519_key_file"] = keys[1].path
    return Settings(
        **signing,
        database_url=args.database_url or f"sqlite:///{tmp / 'bench.db'}",
        smtp_port=smtp_port,
        smtp_max_connections=args.connections,
        secret_key="bench-secret-key-0123456789",
        base_url="https://digest.example.org",
        from_address="digestd <digest@example.org>",
    )


def setup(args: argparse.Namespace, tmp: Path) -> dict[str, float | int]:
    """The database (migrated, subscribers, votes) and the feed file: run in a child process
    (`--setup-only`), so what inserting N subscribers leaves allocated is not counted in
    the peak memory of the process that delivers (a daemon never does both)."""
    from digestd.core.context import AppContext
    from digestd.core.models import utcnow

    ctx = AppContext(settings=bench_settings(args, tmp), actor="bench")
    ctx.migrate()
    now = utcnow()
    started = time.perf_counter()
    add_subscribers(ctx, args.subscribers, args.profiles, now)
    voters, votes = add_votes(ctx, args, now)
    write_feed(tmp / "feed.json", args.entries, now)
    ctx.dispose()
    return {"voters": voters, "votes": votes, "seconds": time.perf_counter() - started}
