"""What the vote pages do: the use cases of `digestd.subscribers.voting`, one transaction
each (kept as this module's names for the routes)."""

from __future__ import annotations

from digestd.subscribers.voting import VotePage, cast, show, undo

__all__ = ["VotePage", "cast", "show", "undo"]
