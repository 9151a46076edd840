"""The held-out two-day check of learning: does a reader who votes get their real interest?

    python benchmarks/eval_learning.py [--pool evaluation|tuning|both] [--trials N]
                                       [--max-items N] [--seed S]
    python benchmarks/eval_learning.py --cost [--voters N]

Data: real abstracts (arXiv API and RSS captures, Hugging Face Daily Papers captures and the
seed page), read through digestd's own parsers from `tests/fixtures/ingest/` (copies of
/work/shared/fixtures) and `seeds/`. Interests are labelled by hand in
`benchmarks/data/interests.json`, and the papers come in two pools kept apart **by source
file**, with different themes:

- tuning: the seeds and the arXiv fixtures, themes `interp` (attention heads and
  interpretability), `testing` (software testing) and `adapt` (adapting pretrained models:
  a broad subject). Ranking constants may be chosen by looking at this pool.
- evaluation: the four Hugging Face captures, themes `agents` and `vision`. Only run to
  report figures; nothing is tuned on it.

The check, per pool, theme and trial: the pool is shuffled (seeded) and cut into day 1 (the
first 30 %) and day 2 (the rest). On day 1 the reader votes "more like this" on three random
papers of the theme and "less like this" on three random others. Day 2's digest, with no
topics and no categories, `max_items` papers (default 10): the voter's, ranked with those
votes by the real `Selector` and learned model; the non-voting twin's (same preferences, no
votes: the trending list). Precision is the share of the theme's papers among the picks.
It also counts digests shorter than `max_items` (learning must never starve a digest).

`--cost` times ranking instead (no precision): a window of both pools' papers twice over
(≈500 real abstracts), 2,000 voters with 5–20 votes each (70 % "more like this") on both
pools' papers as earlier papers, ranked with the real `Selector`; it prints the first
voter's time (the window's statistics are built then) and the mean over the others.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digestd.core.models import Entry  # noqa: E402
from digestd.ingest.detect import parse_document  # noqa: E402
from digestd.ingest.normalize import Rejected, normalize  # noqa: E402
from digestd.ranking import learning  # noqa: E402
from digestd.ranking.select import Profile, Selector, Taste  # noqa: E402
from digestd.subscribers.votes import VoteRow  # noqa: E402

LABELS = ROOT / "benchmarks" / "data" / "interests.json"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
DAY1_SHARE = 0.3
LIKES = DISLIKES = 3
MIN_ABSTRACT = 300  # characters: shorter texts are error entries or stubs, not papers


def label_key(guid: str, canonical_key: str) -> str:
    """How the labels name a paper: its canonical key (the arXiv id), or for a seed its
    number ("seed:004"; the seeds' keys are search links, their guids carry a slug)."""
    if guid.startswith("seed:"):
        return ":".join(guid.split(":")[:2])
    return canonical_key


def load_pool(files: list[str]) -> list[Entry]:
    """The papers of these files, once each, with ids from 1 and their label key as
    `canonical_key`."""
    papers: dict[str, Entry] = {}
    for rel in files:
        body = (ROOT / rel).read_bytes()
        for item in parse_document(body, {}).items:
            try:
                paper = normalize(item, NOW)
            except Rejected:
                continue
            key = label_key(paper.guid, paper.canonical_key)
            if len(paper.summary) < MIN_ABSTRACT or key in papers:
                continue
            papers[key] = Entry(
                id=len(papers) + 1,
                canonical_key=key,
                title=paper.title,
                summary=paper.summary,
                authors=paper.authors,
                upvotes=paper.upvotes or 0,
                published_at=NOW - timedelta(hours=2),
                ingested_at=NOW - timedelta(hours=2),
            )
    return list(papers.values())


@dataclass
class Outcome:
    voter: list[float]
    twin: list[float]
    # The best precision possible: the theme's day-2 papers, at most max_items of them.
    ceiling: list[float]
    short: int = 0


def precision(picks: list[Entry], theme: set[str]) -> float:
    return sum(e.canonical_key in theme for e in picks) / len(picks) if picks else 0.0


def run_theme(
    pool: list[Entry], theme: set[str], trials: int, max_items: int, rng: random.Random
) -> Outcome:
    """`trials` two-day checks of one theme."""
    out = Outcome([], [], [])
    papers = learning.PaperCache()
    for e in pool:
        papers.add(e.id or 0, e.title, e.summary)
    while len(out.voter) < trials:
        order = pool[:]
        rng.shuffle(order)
        cut = int(len(order) * DAY1_SHARE)
        day1, day2 = order[:cut], order[cut:]
        liked = [e for e in day1 if e.canonical_key in theme]
        others = [e for e in day1 if e.canonical_key not in theme]
        if len(liked) < LIKES or len(others) < DISLIKES:
            continue  # this shuffle left too few of the theme on day 1: draw again
        votes = tuple(
            VoteRow(e.id or 0, 1, False, NOW - timedelta(days=1)) for e in rng.sample(liked, LIKES)
        ) + tuple(
            VoteRow(e.id or 0, -1, False, NOW - timedelta(days=1))
            for e in rng.sample(others, DISLIKES)
        )
        profile = Profile("", (), max_items, NOW - timedelta(days=1), NOW)
        selector = Selector(day2)
        voter = [p.entry for p in selector.select(profile, frozenset(), Taste(votes, papers, NOW))]
        twin = [p.entry for p in selector.select(profile)]
        out.short += len(voter) < min(max_items, len(day2))
        out.voter.append(precision(voter, theme))
        out.twin.append(precision(twin, theme))
        present = sum(e.canonical_key in theme for e in day2)
        out.ceiling.append(min(present, max_items) / min(max_items, len(day2)))
    return out


def cost(labels: dict[str, dict[str, list[str]]], voters: int, max_items: int) -> None:
    """Time a voter's model and ranking in a ≈500-paper window (see the module's text)."""
    earlier = [e for spec in labels.values() for e in load_pool(spec["files"])]
    window = [
        Entry(
            id=10_000 + copy * len(earlier) + n,
            canonical_key=f"{e.canonical_key}#{copy}",
            title=f"{e.title} ({copy})",
            summary=e.summary,
            authors=e.authors,
            upvotes=e.upvotes,
            published_at=e.published_at,
            ingested_at=e.ingested_at,
        )
        for copy in range(2)
        for n, e in enumerate(earlier)
    ]
    papers = learning.PaperCache()
    for n, e in enumerate(earlier):
        papers.add(n + 1, e.title, e.summary)
    rng = random.Random(12)
    tastes = [
        Taste(
            tuple(
                VoteRow(i, 1 if rng.random() < 0.7 else -1, False, NOW - timedelta(days=1))
                for i in rng.sample(range(1, len(earlier) + 1), rng.randint(5, 20))
            ),
            papers,
            NOW,
        )
        for _ in range(voters)
    ]
    profile = Profile("", (), max_items, NOW - timedelta(days=1), NOW)
    selector = Selector(window)
    started = time.process_time()
    selector.select(profile, frozenset(), tastes[0])
    first = time.process_time() - started
    started = time.process_time()
    for taste in tastes[1:]:
        selector.select(profile, frozenset(), taste)
    rest = (time.process_time() - started) / max(len(tastes) - 1, 1)
    print(
        f"cost: window {len(window)} papers, {voters} voters (5-20 votes): first voter "
        f"{first * 1000:.1f} ms (window statistics), then {rest * 1000:.2f} ms a voter"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=("evaluation", "tuning", "both"), default="evaluation")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--max-items", type=int, default=10)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--cost", action="store_true", help="time ranking voters instead")
    parser.add_argument("--voters", type=int, default=2000, help="with --cost")
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text(encoding="utf-8"))["pools"]
    if args.cost:
        cost(labels, args.voters, args.max_items)
        return
    pools = ("tuning", "evaluation") if args.pool == "both" else (args.pool,)
    print(
        f"two-day check: day 1 = {DAY1_SHARE:.0%} of the pool, {LIKES} likes + {DISLIKES} "
        f"dislikes, day 2 digest of {args.max_items}, {args.trials} trials, seed {args.seed}"
    )
    for name in pools:
        spec = labels[name]
        pool = load_pool(spec["files"])
        voters: list[float] = []
        twins: list[float] = []
        for theme_name, theme in spec["themes"].items():
            members = set(theme["papers"])
            present = sum(e.canonical_key in members for e in pool)
            rng = random.Random(f"{args.seed}:{name}:{theme_name}")
            out = run_theme(pool, members, args.trials, args.max_items, rng)
            voters += out.voter
            twins += out.twin
            v, t = statistics.mean(out.voter), statistics.mean(out.twin)
            low = sorted(out.voter)[len(out.voter) // 10]
            print(
                f"{name:10} {theme_name:8} papers {len(pool):3} (theme {present:2}): "
                f"voters {v:.3f} (10th pct {low:.2f}), twins {t:.3f}, "
                f"gain {v - t:+.3f}, best possible {statistics.mean(out.ceiling):.3f}, "
                f"short digests {out.short}"
            )
        v, t = statistics.mean(voters), statistics.mean(twins)
        print(f"{name:10} {'all':8} voters {v:.3f}, twins {t:.3f}, gain {v - t:+.3f}")


if __name__ == "__main__":
    main()
