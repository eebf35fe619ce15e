"""A full disk or a read-only library folder: `imgsearch` says so (exit 1, the library named, no
traceback), and the library it had stays intact and answers queries as before.

The library lives on a small tmpfs (mounted here, so these tests need root; they skip otherwise):
a real full file system, filled at the moment of interest by wrapping the write in question, and
a real read-only mount (root ignores file permissions, but not `mount -o ro`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgsearch.library import Library
from tests.support.harness import (
    copy_photos,
    fill_disk,
    index_in_process,
    integrity,
    isolated_settings,
    read_state,
    real_photos,
    remount,
    summary_counts,
    tmpfs,
)

pytestmark = pytest.mark.photos

QUERIES = (("query", "a dog on the grass", "-k", "16"), ("similar", None, "-k", "5"))


@dataclass(frozen=True)
class Template:
    photos: Path
    library: Path

    @property
    def probe(self) -> Path:
        """The photo `similar` is asked about."""
        return min(self.photos.iterdir())


def answers(run, library: Path, probe: Path, code: int = 0) -> list[list[dict]] | str:
    """The hits of a fixed text query and a fixed `similar` query (or stderr when they fail)."""
    found = []
    for cmd, arg, *rest in QUERIES:
        result = run(cmd, arg or probe, *rest, "--json", "--library", library, code=code)
        if code:
            return result.stderr
        found.append(json.loads(result.stdout))
    return found


def build_template(model: str, home: Path, cache: Path, photos: int) -> Template:
    folder = home / "photos"
    copy_photos(real_photos(photos), folder)
    with isolated_settings(home, cache):
        index_in_process(folder, "--library", home / "library", "--model", model)
    return Template(folder, home / "library")


@pytest.fixture(scope="module")
def template(tiny_model, tmp_path_factory, session_cache) -> Template:
    """16 real photos indexed once; each test copies the library onto its own small disk."""
    return build_template(tiny_model, tmp_path_factory.mktemp("template"), session_cache, 16)


@pytest.fixture(scope="module")
def large_template(tiny_model, tmp_path_factory, session_cache) -> Template:
    """40 photos: a FAISS file larger than one stdio buffer (4 KiB), so written in pieces."""
    home = tmp_path_factory.mktemp("large-template")
    return build_template(tiny_model, home, session_cache, 40)


@pytest.fixture
def disk(tmp_path_factory) -> Iterator[Path]:
    """A 64 MiB tmpfs, read-write again before it is unmounted. Its path holds no word an error
    message is checked for (test names such as test_disk_full... would)."""
    with tmpfs(tmp_path_factory.mktemp("vol"), "64m") as where:
        try:
            yield where
        finally:
            remount(where, "rw")


def copy_library(template: Template, disk: Path) -> Path:
    return Path(shutil.copytree(template.library, disk / "library"))


@pytest.fixture
def library(template, disk) -> Path:
    """The template library, copied onto the small disk."""
    return copy_library(template, disk)


@pytest.fixture
def more(tmp_path_factory) -> Path:
    """8 photos the library does not hold yet."""
    folder = tmp_path_factory.mktemp("more")
    copy_photos(real_photos(8, start=40), folder)
    return folder


@pytest.fixture
def expected(run, template) -> list[list[dict]]:
    """What the untouched library answers."""
    return answers(run, template.library, template.probe)


def assert_intact(run, library: Path, template: Template, expected) -> None:
    """The same rows (ids, vectors), a sound database, the same answers to the same queries."""
    before, after = read_state(template.library), read_state(library)
    assert integrity(library) == "ok"
    assert {p: r.id for p, r in after.rows.items()} == {p: r.id for p, r in before.rows.items()}
    for path, row in after.rows.items():
        assert row.vector.tobytes() == before.rows[path].vector.tobytes()
    assert_same_answers(answers(run, library, template.probe), expected)


def assert_same_answers(got: list[list[dict]] | str, want: list[list[dict]] | str) -> None:
    """The same hits in the same order with the same fields; scores to float precision (a
    small library's exact search runs on numpy when its file is sound, on FAISS while the
    file is rebuilt: the two sum each dot product in another order)."""
    assert not isinstance(got, str) and not isinstance(want, str), (got, want)
    assert [len(hits) for hits in got] == [len(hits) for hits in want]
    for hits, wanted in zip(got, want):
        for hit, ref in zip(hits, wanted):
            assert {**hit, "score": None} == {**ref, "score": None}
            assert hit["score"] == pytest.approx(ref["score"], abs=1e-6)


def assert_index_files_readable(library: Path) -> None:
    """No truncated FAISS file was put in place (a later run could trust its name)."""
    import faiss

    for file in library.glob("vectors-*.faiss"):
        try:
            faiss.read_index(str(file))
        except RuntimeError as exc:
            raise AssertionError(f"{file.name} left unreadable: {exc}") from None


@pytest.mark.timeout(120)
def test_disk_full_while_storing_a_batch(run, library, disk, more, template, expected, monkeypatch):
    store = Library.store

    def store_on_a_full_disk(self, done, failed):
        fill_disk(disk)
        return store(self, done, failed)

    monkeypatch.setattr(Library, "store", store_on_a_full_disk)
    result = run("index", more, "--library", library, code=1)
    assert f"library {library}" in result.stderr and "disk is full" in result.stderr
    monkeypatch.undo()
    assert_intact(run, library, template, expected)  # the disk is still full
    (disk / "filler").unlink()
    counts = summary_counts(run("index", more, "--library", library).stderr)
    assert counts["added"] == 8


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", ["template", "large_template"])
def test_disk_full_while_writing_the_faiss_file(run, disk, size, request, monkeypatch):
    from imgsearch import vectors

    template = request.getfixturevalue(size)
    expected = answers(run, template.library, template.probe)
    library = copy_library(template, disk)
    for old in library.glob("vectors-*.faiss"):
        old.unlink()  # so that `index` on the unchanged photos writes a new one
    save = vectors.save

    def save_to_a_full_disk(*args, **kwargs):
        fill_disk(disk)
        return save(*args, **kwargs)

    monkeypatch.setattr(vectors, "save", save_to_a_full_disk)
    result = run("index", template.photos, "--library", library, code=1)
    assert f"library {library}" in result.stderr and "disk is full" in result.stderr
    monkeypatch.undo()
    assert_index_files_readable(library)
    assert read_state(library).temp_files == []
    assert_intact(run, library, template, expected)
    (disk / "filler").unlink()
    run("index", template.photos, "--library", library)
    assert read_state(library).faiss_fresh
    assert_index_files_readable(library)


@pytest.mark.timeout(120)
def test_disk_already_full(run, library, disk, more, template, expected):
    fill_disk(disk)
    result = run("index", more, "--library", library, code=1)
    assert f"library {library}" in result.stderr and "disk is full" in result.stderr
    # SQLite needs a little room to open the library at all: the query must say why it fails.
    error = answers(run, library, template.probe, code=1)
    assert f"library {library}" in error and "disk is full" in error
    (disk / "filler").unlink()
    assert_intact(run, library, template, expected)


@pytest.mark.timeout(120)
def test_read_only_library(run, library, disk, more, template, expected):
    remount(disk, "ro")
    result = run("index", more, "--library", library, code=1)
    assert f"library {library}" in result.stderr and "read-only" in result.stderr
    assert_same_answers(answers(run, library, template.probe), expected)  # reading needs no writing
    remount(disk, "rw")
    assert_intact(run, library, template, expected)
    counts = summary_counts(run("index", more, "--library", library).stderr)
    assert counts["added"] == 8
