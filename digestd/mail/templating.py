"""Jinja2 environments for the pages and the confirmation email (autoescaped, overridable)."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from digestd.core.config import Settings
from digestd.core.paths import data_dir


def template_dirs(settings: Settings) -> list[Path]:
    """DIGESTD_TEMPLATES_DIR first (a template found there wins), then the shipped ones."""
    dirs = [data_dir("templates")]
    if settings.templates_dir is not None:
        dirs.insert(0, settings.templates_dir)
    return dirs


def make_environment(settings: Settings) -> Environment:
    """One environment for pages and mails: `.html` autoescaped, `.txt` left as text."""
    loaders = [FileSystemLoader(str(d)) for d in template_dirs(settings)]
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html", "xml"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["site_name"] = site_name(settings)
    env.globals["page_title"] = settings.page_title
    return env


def site_name(settings: Settings) -> str:
    """The display name of DIGESTD_FROM ("Paper digest <x@y>"), else "digestd"."""
    name, _ = parseaddr(settings.from_address)
    return name.strip() or "digestd"
