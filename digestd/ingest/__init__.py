"""Ingestion: sources (RSS/Atom, arXiv API, HF Daily Papers, JSON Feed) → entries.

Public entry points live in `digestd.ingest.run`: `fetch_sources` and `ingest_file`.
"""

from __future__ import annotations

from typing import Any

from digestd.ingest.types import FetchReport

__all__ = ["FetchReport", "fetch_sources", "ingest_file"]


def __getattr__(name: str) -> Any:  # lazy: keep `import digestd.ingest` cheap (no httpx/feedparser)
    if name in ("fetch_sources", "ingest_file"):
        from digestd.ingest import run

        return getattr(run, name)
    raise AttributeError(name)
