"""The subscription web: subscribe, confirm, unsubscribe, preferences, health."""

from digestd.web.app import create_app
from digestd.web.server import serve

__all__ = ["create_app", "serve"]
