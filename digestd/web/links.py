"""Signed links as the web sees them: the subscriber side decides which subscriber a token
belongs to (`digestd.subscribers.links`); a LinkError from any route becomes its page."""

from __future__ import annotations

from digestd.subscribers.links import MAX_TOKEN_LENGTH, LinkError, resolve

__all__ = ["MAX_TOKEN_LENGTH", "LinkError", "resolve"]
