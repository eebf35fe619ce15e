"""`imgsearch completion SHELL`: the shell-completion script (click's), to source once."""

from __future__ import annotations

import click

from imgsearch.cli import cli
from imgsearch.output import echo

SHELLS = ("bash", "zsh", "fish")


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the tab-completion script for SHELL (commands, options, file names).

    \b
    Example:
      eval "$(imgsearch completion bash)"                   # in ~/.bashrc
      eval "$(imgsearch completion zsh)"                    # in ~/.zshrc
      imgsearch completion fish > ~/.config/fish/completions/imgsearch.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover (click ships all three)
        raise click.UsageError(f"no completion for {shell}")
    echo(cls(cli, {}, "imgsearch", "_IMGSEARCH_COMPLETE").source())
