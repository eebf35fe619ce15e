"""The cursor: opaque, tied to its query, bounded; pages of one ranking with no gaps."""

from __future__ import annotations

import pytest

from imgsearch.web import opener, paging


def ranking(n: int):
    calls: list[int] = []

    def rank(k: int) -> list[int]:
        calls.append(k)
        return list(range(min(k, n)))

    return rank, calls


def test_pages_cover_the_ranking_exactly_once():
    rank, calls = ranking(23)
    key, cursor, seen = paging.query_key({"q": "dog"}), None, []
    while True:
        page = paging.page(rank, key, cursor, 5)
        assert page.offset == len(seen)
        seen += page.items
        if page.next is None:
            break
        cursor = page.next
    assert seen == list(range(23))
    assert calls == [6, 11, 16, 21, 26]  # one ranking of offset + size + 1 per page


def test_a_full_last_page_has_no_next():
    rank, _ = ranking(10)
    key = paging.query_key("x")
    first = paging.page(rank, key, None, 5)
    last = paging.page(rank, key, first.next, 5)
    assert last.items == list(range(5, 10)) and last.next is None


def test_the_cursor_belongs_to_its_query():
    rank, _ = ranking(10)
    a, b = paging.query_key({"q": "dog"}), paging.query_key({"q": "cat"})
    assert a != b and a == paging.query_key({"q": "dog"})
    cursor = paging.page(rank, a, None, 3).next
    with pytest.raises(paging.CursorError, match="another query"):
        paging.page(rank, b, cursor, 3)


@pytest.mark.parametrize("cursor", ["!!!", "e30", "bm90IGpzb24", paging.encode("k", -1)])
def test_garbled_or_negative_cursors_are_refused(cursor):
    with pytest.raises(paging.CursorError):
        paging.decode(cursor, "k")


def test_offsets_are_bounded():
    with pytest.raises(paging.CursorError, match="out of range"):
        paging.decode(paging.encode("k", paging.MAX_OFFSET + 1), "k")


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
