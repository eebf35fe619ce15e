"""`imgsearch serve`: the web UI and JSON API on a local port (Starlette under uvicorn)."""

from __future__ import annotations

import threading

import click

from imgsearch.cli import cli, library_option, settings_from
from imgsearch.output import echo, warn


@cli.command()
@library_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in the web browser.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="Extra Host name the server answers to, e.g. a LAN name (repeatable).",
)
@click.option(
    "--public",
    is_flag=True,
    help="Allow listening on a non-loopback address: anyone who can reach it sees your photos.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    library: str | None,
    host: str,
    port: int,
    open_browser: bool,
    allow_hosts: tuple[str, ...],
    public: bool,
) -> None:
    """Browse and search the library in a web browser; Ctrl-C stops the server.

    Listens on 127.0.0.1 only, unless --public is given with another --host.

    \b
    Example:
      imgsearch serve --open
      imgsearch serve --port 8080 --library ~/photos-library
      imgsearch serve --host 0.0.0.0 --public --allow-host nas.local
    """
    from imgsearch.web import security

    if not security.is_loopback(host) and not public:
        raise click.UsageError(
            f"--host {host} is not a loopback address: anyone on the network could browse your "
            f"photos. Add --public to do it anyway."
        )
    import uvicorn

    from imgsearch.search import Searcher
    from imgsearch.web.app import create_app

    settings = settings_from(ctx, library=library)
    searcher = Searcher(settings.library_path, settings=settings)
    searcher.embed_text("warm up")  # the text model loads now, not on the first search
    app = create_app(searcher, settings, bind_host=host, allow_hosts=allow_hosts)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    if not security.is_loopback(host):
        warn(
            f"warning: serving {searcher.library.path} on {host}: every machine that can reach "
            f"port {port} can see these photos (no login)"
        )
        if host in ("0.0.0.0", "::") and not allow_hosts:
            warn("warning: only loopback Host names are allowed; add --allow-host NAME")
            shown = "127.0.0.1"

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            url = f"http://{shown}:{bound}/"
            echo(f"imgsearch: serving {searcher.library.path} at {url} (Ctrl-C stops)")
            if open_browser:
                import webbrowser

                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled, once shut down
        pass
    finally:
        app.state.web.close()
        searcher.close()
    if not server.started:
        raise click.ClickException(f"could not listen on {host}:{port} (see the message above)")
    warn("imgsearch: server stopped")
