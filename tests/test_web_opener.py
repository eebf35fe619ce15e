"""'Open in file manager' runs the OS's own command, with the checked path as one argument."""

from __future__ import annotations

import pytest

from imgsearch.web import opener


@pytest.mark.parametrize(
    "platform, argv",
    [
        ("linux", ["xdg-open", "/photos/2024"]),
        ("darwin", ["open", "-R", "/photos/2024/a.jpg"]),
        ("win32", ["explorer", "/select,/photos/2024/a.jpg"]),
    ],
)
def test_the_file_manager_command_per_os(platform, argv):
    assert opener.command("/photos/2024/a.jpg", platform) == argv
