"""`digestd web`: the subscription web alone (the daemon `digestd run` embeds the same app)."""

from __future__ import annotations

import typer

from digestd.cli.common import console, fail, get_context


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("web")
    def web(ctx: typer.Context) -> None:
        """Serve the subscribe / confirm / unsubscribe / preferences pages on DIGESTD_LISTEN."""
        from digestd.web.server import ServeError, bind, run

        context = get_context(ctx, actor="web")  # logging is configured there
        s = context.settings
        try:
            # The port is taken before it is announced: a busy one is one line, exit 1.
            sock = bind(s.listen_host, s.listen_port)
        except ServeError as exc:
            fail(str(exc))
        if s.log_format != "json":  # else `run` logs it (as JSON)
            console.print(
                f"digestd web listening on http://{s.listen} "
                f"(links point to {s.base_url}); Ctrl-C stops it",
                highlight=False,
            )
        try:
            run(context, sock)
        except ServeError as exc:
            fail(str(exc))
