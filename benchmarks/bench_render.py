"""Selection, rendering and personalization at scale (prints figures; not a test).

    .venv/bin/python benchmarks/bench_render.py --entries 500 --profiles 1000 \\
        --subscribers 100000

1. Setup (not timed): a fresh SQLite file with E entries (seed papers recombined so titles
   and abstracts differ), P distinct preference profiles (topic words, phrases,
   exclusions, categories, sizes; some without topics), S subscribers spread over them.
2. Selection (timed): one `Selector.load` of the window, then one ranking per profile.
3. Render (timed): one `render_digest` per profile (80 % HTML + text, 20 % text only).
4. Personalization (timed): for every subscriber, three signed links (`tokens.link`) and
   `Renderer.personalize`; results are dropped at once, as a streaming sender would.

Prints each phase's time, per-profile and per-subscriber costs, messages prepared per
second overall, average body size and peak memory (ru_maxrss: includes setup).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digestd.core.config import Settings  # noqa: E402
from digestd.core.context import AppContext  # noqa: E402
from digestd.core.db import session_scope  # noqa: E402
from digestd.core.models import Entry, Source  # noqa: E402
from digestd.core.tokens import link, view_url  # noqa: E402
from digestd.mail.render import DigestBody, Renderer  # noqa: E402
from digestd.ranking.select import Profile, Selector  # noqa: E402

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CATEGORIES = ["cs.CL", "cs.LG", "cs.AI", "cs.CV", "cs.IR", "stat.ML", "cs.SE", "cs.RO"]
PHRASES = [
    '"attention heads"',
    '"KV cache"',
    '"multi-task learning"',
    '"retrieval-augmented generation"',
    '"instruction tuning"',
    '"mechanistic interpretability"',
    '"long context"',
    '"language models"',
]


def make_entries(n: int, rng: random.Random) -> list[dict[str, object]]:
    seed = json.loads((REPO / "seeds" / "trending-papers.json").read_text(encoding="utf-8"))
    items = seed["items"]
    out = []
    for i in range(n):
        a, b = rng.choice(items), rng.choice(items)
        title_words = a["title"].split()
        cut = rng.randint(2, max(2, len(title_words) - 1))
        title = " ".join(title_words[:cut] + b["title"].split()[cut // 2 :])
        sentences = (a["content_text"] + " " + b["content_text"]).split(". ")
        rng.shuffle(sentences)
        out.append(
            {
                "canonical_key": f"bench:{i}",
                "url": f"https://arxiv.org/abs/2611.{i:05d}",
                "title": title,
                "summary": ". ".join(sentences[:10]) + ".",
                "authors": [f"Author {k}" for k in range(rng.randint(1, 12))],
                "categories": rng.sample(CATEGORIES, rng.randint(1, 3)),
                "upvotes": rng.randint(0, 300),
                "code_url": f"https://github.com/example/p{i}" if rng.random() < 0.4 else None,
                "published_at": NOW - timedelta(hours=rng.uniform(0, 23)),
            }
        )
    return out


def make_profiles(n: int, entries: list[dict[str, object]], rng: random.Random) -> list[Profile]:
    vocab = sorted(
        {
            w.strip(":,.()").lower()
            for e in entries
            for w in str(e["title"]).split()
            if len(w) > 5 and w.isascii()
        }
    )
    start, end = NOW - timedelta(days=1), NOW
    profiles: dict[str, Profile] = {}
    while len(profiles) < n:
        r = rng.random()
        if r < 0.1:
            topics = ""
        else:
            parts = rng.sample(vocab, rng.randint(1, 3))
            if rng.random() < 0.5:
                parts.append(rng.choice(PHRASES))
            if rng.random() < 0.3:
                parts.append("-" + rng.choice(vocab))
            topics = " ".join(parts)
        cats = tuple(rng.sample(CATEGORIES, 2)) if rng.random() < 0.2 else ()
        p = Profile(topics, cats, rng.choice([5, 10, 10, 15, 25]), start, end)
        profiles[p.key] = p
    return list(profiles.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            secret_key="bench-secret-key-0123456789",
            from_address="Papers Digest <papers@example.org>",
            base_url="https://digest.example.org",
        )
        ctx = AppContext(settings=settings, clock=lambda: NOW)
        ctx.migrate()
        rows = make_entries(args.entries, rng)
        with session_scope(ctx.engine) as s:
            src = Source(url="https://example.org/feed.json", name="Bench", created_at=NOW)
            s.add(src)
            s.flush()
            for row in rows:
                s.add(Entry(source_id=src.id, ingested_at=NOW - timedelta(hours=1), **row))  # type: ignore[arg-type]
        profiles = make_profiles(args.profiles, rows, rng)

        # -- selection: one load, one ranking per profile
        t0 = time.perf_counter()
        with session_scope(ctx.engine) as s:
            selector = Selector.load(s, NOW - timedelta(days=1), NOW)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        picks = {p.key: selector.select(p) for p in profiles}
        t_rank = time.perf_counter() - t0
        # what a sender does per subscriber: ask again with their (empty) never-twice set;
        # equal inputs are answered from the selector's memo
        t0 = time.perf_counter()
        history: frozenset[int] = frozenset({10**9})  # sent long ago: outside the window
        for sub_id in range(args.subscribers):
            selector.select(profiles[sub_id % len(profiles)], history)
        t_lookup = (time.perf_counter() - t0) / args.subscribers

        # -- render: once per profile
        renderer = Renderer(settings)
        # the first render compiles the templates
        renderer.render_digest(profiles[0], picks[profiles[0].key], day=NOW.date())
        t0 = time.perf_counter()
        bodies: list[DigestBody] = []
        for i, p in enumerate(profiles):
            fmt = "text" if i % 5 == 4 else "html"
            bodies.append(renderer.render_digest(p, picks[p.key], day=NOW.date(), fmt=fmt))
        t_render = time.perf_counter() - t0

        # -- personalization: every subscriber, three signed links + substitution
        secret, base = ctx.secret_key, settings.base_url
        t0 = time.perf_counter()
        total_bytes = 0
        for sub_id in range(1, args.subscribers + 1):
            body = bodies[sub_id % len(bodies)]
            mail = renderer.personalize(
                body,
                email=f"user{sub_id}@example.org",
                unsubscribe_url=link(base, secret, "unsubscribe", sub_id, 1),
                preferences_url=link(base, secret, "preferences", sub_id, 1),
                view_url=view_url(link(base, secret, "view", sub_id, 1), "2026-11-26"),
            )
            total_bytes += len(mail.text) + len(mail.html or "")
        t_personal = time.perf_counter() - t0

        # the substitution alone, without token signing
        sample = min(args.subscribers, 20_000)
        t0 = time.perf_counter()
        for sub_id in range(sample):
            renderer.personalize(
                bodies[sub_id % len(bodies)],
                email="user@example.org",
                unsubscribe_url="https://digest.example.org/unsubscribe/x",
                preferences_url="https://digest.example.org/preferences/y",
                view_url="https://digest.example.org/view/z/2026-11-26",
            )
        t_subst = (time.perf_counter() - t0) / sample
        ctx.dispose()

    total = t_load + t_rank + t_lookup * args.subscribers + t_render + t_personal
    empty = sum(1 for p in profiles if not picks[p.key])
    avg_items = sum(len(v) for v in picks.values()) / len(profiles)
    html_sizes = [len(b.html.encode()) for b in bodies if b.html]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"entries {args.entries}, profiles {len(profiles)}, subscribers {args.subscribers}")
    print(
        f"selection: load window {t_load * 1000:.1f} ms, rank {t_rank:.2f} s "
        f"({t_rank / len(profiles) * 1000:.2f} ms/profile; {avg_items:.1f} picks avg, "
        f"{empty} empty); per-subscriber memo lookup {t_lookup * 1e6:.1f} µs"
    )
    print(
        f"render: {t_render:.2f} s ({t_render / len(profiles) * 1000:.2f} ms/profile; "
        f"HTML avg {sum(html_sizes) / max(len(html_sizes), 1) / 1024:.1f} KB, "
        f"max {max(html_sizes, default=0) / 1024:.1f} KB)"
    )
    print(
        f"personalization: {t_personal:.2f} s ({t_personal / args.subscribers * 1e6:.1f} "
        f"µs/subscriber incl. 3 signed links; substitution alone {t_subst * 1e6:.1f} µs)"
    )
    print(
        f"total {total:.2f} s → {args.subscribers / total:,.0f} messages prepared/s "
        f"({total_bytes / 1e6:.0f} MB of bodies produced and dropped)"
    )
    print(f"peak memory (ru_maxrss, includes setup): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
