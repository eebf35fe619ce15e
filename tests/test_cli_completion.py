"""`imgsearch completion SHELL`: click's completion scripts, and completion that works."""

from __future__ import annotations

import pytest

from imgsearch.cli import cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(run, shell):
    script = run("completion", shell).stdout
    assert "_IMGSEARCH_COMPLETE" in script and f"{shell}_complete" in script


def test_unknown_shell_is_a_usage_error(run):
    assert "tcsh" in run("completion", "tcsh", code=2).stderr


def test_the_script_completes_commands_and_options(monkeypatch, capsys):
    """What the bash script asks imgsearch when the user presses Tab after `imgsearch qu`."""
    monkeypatch.setenv("_IMGSEARCH_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "imgsearch qu")
    monkeypatch.setenv("COMP_CWORD", "1")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(prog_name="imgsearch")
    assert exit_info.value.code == 0
    assert "plain,query" in capsys.readouterr().out.splitlines()
    monkeypatch.setenv("COMP_WORDS", "imgsearch query --js")
    monkeypatch.setenv("COMP_CWORD", "2")
    with pytest.raises(SystemExit):
        cli.main(prog_name="imgsearch")
    assert "plain,--json" in capsys.readouterr().out.splitlines()
