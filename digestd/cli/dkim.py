"""`digestd dkim keygen`: make the keys digestd signs with and say what to publish in DNS."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from digestd.cli.common import console, fail, get_context, print_json
from digestd.cli.groups import Group

app = typer.Typer(cls=Group, help="DKIM signing keys (README: DKIM signing).", no_args_is_help=True)


@app.command("keygen")
def keygen(
    ctx: typer.Context,
    selector: str = typer.Option(..., "--selector", help="Selector of the key, e.g. s2026."),
    ed25519: bool = typer.Option(
        False, "--ed25519", help="Also an Ed25519 key (selector SELECTOR-ed25519), beside RSA."
    ),
    out: Path = typer.Option(Path("."), "--out", help="Folder the key files are written to."),
    domain: str | None = typer.Option(
        None, "--domain", help="Signing domain (default: DIGESTD_DKIM_DOMAIN, else From's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Stable JSON output for scripts."),
) -> None:
    """Write SELECTOR.private (RSA-2048, mode 0600; never printed) and print the DNS TXT
    record to publish. An existing key file is kept, and its record printed again."""
    from digestd.core.config import _selector as parse_selector
    from digestd.core.config_providers import domain as parse_domain
    from digestd.mail.dkim import DkimKeyError, from_domain
    from digestd.mail.dkim_keys import keygen as make_keys

    settings = get_context(ctx, migrate=False).settings
    try:
        chosen = parse_selector(selector)
        where = parse_domain(domain) if domain else None
    except ValueError as exc:
        fail(f"--{'selector' if 'label' in str(exc) else 'domain'} {exc}")
    if not chosen:
        fail("--selector must not be empty")
    where = where or settings.dkim_domain or from_domain(settings.from_address)
    try:
        records = make_keys(out.expanduser().resolve(), chosen, where, ed25519_key=ed25519)
    except (OSError, ValueError, DkimKeyError) as exc:
        fail(str(exc))
    if as_json:
        print_json(
            {
                "keys": [
                    {
                        "file": str(r.path),
                        "written": r.written,
                        "selector": r.selector,
                        "kind": r.kind,
                        "name": r.name,
                        "value": r.value,
                    }
                    for r in records
                ]
            }
        )
        return
    settings_lines = []
    for r in records:
        verb = "wrote" if r.written else "kept the existing"
        console.print(f"{verb} {escape(str(r.path))} ({r.kind}, mode 0600)", highlight=False)
        console.print("publish this DNS TXT record:", highlight=False)
        console.print(f"  name:  {r.name}", highlight=False, soft_wrap=True)
        console.print(f"  value: {r.value}", highlight=False, soft_wrap=True)
        console.print(f"  zone file: {escape(r.zone_line())}", highlight=False, soft_wrap=True)
        if r.kind == "Ed25519":
            settings_lines.append(f"DIGESTD_DKIM_ED25519_KEY_FILE={r.path}")
            if r.selector != f"{chosen}-ed25519":
                settings_lines.append(f"DIGESTD_DKIM_ED25519_SELECTOR={r.selector}")
        else:
            settings_lines += [
                f"DIGESTD_DKIM_KEY_FILE={r.path}",
                f"DIGESTD_DKIM_SELECTOR={r.selector}",
            ]
    if where != (settings.dkim_domain or from_domain(settings.from_address)):
        settings_lines.append(f"DIGESTD_DKIM_DOMAIN={where}")
    console.print("then set (and run `digestd doctor` once the record is live):", highlight=False)
    for line in settings_lines:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
