"""indexer.walk: which files a scan yields, what it reports, and that it stays cheap and safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearch.errors import ImgsearchError
from indexer.walk import FileEntry, WalkSkip, fingerprint, scan, sniff_format
from tests.support.corpus import (
    REPO_ROOT,
    CorpusCase,
    run_unprivileged,
    world_readable_corpus,
)

IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def corpus() -> Iterator[tuple[Path, list[CorpusCase]]]:
    with world_readable_corpus() as built:
        yield built


def _scan(root: Path, **options: object) -> tuple[list[FileEntry], list[WalkSkip]]:
    skips: list[WalkSkip] = []
    entries = list(scan([root], on_skip=skips.append, **options))  # type: ignore[arg-type]
    return entries, skips


def _rel(root: Path, entries: list[FileEntry]) -> list[str]:
    return [os.path.relpath(e.path, root) for e in entries]


def _canonical_rel(root: Path, relpath: str) -> str:
    """Where a case's file really is, relative to `root` (a symlink's target)."""
    return os.path.relpath(os.path.realpath(root / relpath), root)


@pytest.mark.timeout(60)
def test_scan_yields_images_of_the_hostile_corpus(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, cases = corpus
    entries, _ = _scan(root)
    # root bypasses permissions, so the chmod-000 cases are readable in this process
    expected = {
        _canonical_rel(root, c.relpath) for c in cases if c.walked or (c.unprivileged and IS_ROOT)
    }
    assert "../root-outside/outside.jpg" in expected  # the symlinked file, by its real path
    assert sorted(_rel(root, entries)) == sorted(expected)


@pytest.mark.timeout(60)
def test_scan_reports_links_loops_and_pipes(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    _, skips = _scan(root)
    reasons = {os.path.relpath(s.path, root): s.reason for s in skips}
    assert reasons == {
        "broken_link.jpg": "broken symbolic link (its target does not exist)",
        "loops/back": "symbolic link loop (points to a folder containing it)",
        "pipe.jpg": "not a regular file (named pipe)",
    }


def test_scan_order_is_sorted_depth_first(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    paths = [p for p in _rel(root, _scan(root)[0]) if not p.startswith("..")]
    assert paths == sorted(paths, key=lambda p: p.split(os.sep))
    assert _rel(root, _scan(root)[0]) == _rel(root, _scan(root)[0])


def test_entries_are_canonical_and_stat_exact(
    corpus: tuple[Path, list[CorpusCase]],
) -> None:
    root, _ = corpus
    by_rel = {os.path.relpath(e.path, root): e for e in _scan(root)[0]}
    assert "link_outside.jpg" not in by_rel  # one identity: the file's real path
    link = by_rel["../root-outside/outside.jpg"]
    assert link.path == os.path.realpath(root / "link_outside.jpg")
    assert by_rel["../root-outside/dir/deep.png"].root == str(root)  # found under the root
    st = os.stat(link.path)
    assert (link.size, link.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert all(os.path.isabs(e.path) for e in by_rel.values())


def test_skip_hidden_off_walks_hidden_and_system_folders(
    corpus: tuple[Path, list[CorpusCase]],
) -> None:
    root, _ = corpus
    rel = set(_rel(root, _scan(root, skip_hidden=False)[0]))
    assert {".hidden.jpg", "@eaDir/thumb.jpg"} <= rel


def test_follow_symlinks_off_ignores_every_link(corpus: tuple[Path, list[CorpusCase]]) -> None:
    root, _ = corpus
    entries, skips = _scan(root, follow_symlinks=False)
    rel = set(_rel(root, entries))
    assert not rel & {"link_outside.jpg", "linked_dir/deep.png"}
    assert "plain.jpg" in rel
    assert [os.path.relpath(s.path, root) for s in skips] == ["pipe.jpg"]


def test_missing_root_raises_before_anything_is_yielded(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")
    missing = tmp_path / "nope"
    with pytest.raises(ImgsearchError, match=r"nope: no such file or folder"):
        scan([tmp_path, missing])  # raised at call time, not on first next()


def test_root_that_is_a_file(tmp_path: Path) -> None:
    image, other = tmp_path / "one.PNG", tmp_path / "notes.txt"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    other.write_bytes(b"text")
    assert [e.path for e in scan(str(image))] == [str(image)]
    skips: list[WalkSkip] = []
    assert list(scan(other, on_skip=skips.append)) == []
    assert skips == [WalkSkip(str(other), "not an image file (unsupported extension)")]


def test_same_file_reached_twice_is_yielded_once(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 10)
    os.link(tree / "sub" / "a.jpg", tree / "hard.jpg")
    os.symlink(tree / "sub" / "a.jpg", tree / "soft.jpg")
    os.symlink(tree / "sub", tree / "again")  # the same folder by another name
    entries = list(scan([tree, tree / "sub"]))
    assert len(entries) == 1
    assert _rel(tree, entries) == ["sub/a.jpg"]  # its real path, however it was reached


def test_extensions_are_case_insensitive_and_others_unopened(tmp_path: Path) -> None:
    for name in ("a.JPG", "b.Jpeg", "c.HEIC", "d.tiff", "e.txt", "f.jpg.bak", "g.avif"):
        (tmp_path / name).write_bytes(b"")
    assert _rel(tmp_path, list(scan(tmp_path))) == ["a.JPG", "b.Jpeg", "c.HEIC", "d.tiff", "g.avif"]


def test_sniff_format_names_supported_content() -> None:
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1") == "AVIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2") is None  # MP4
    assert sniff_format(b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00") == "BMP"
    assert sniff_format(b"BMW is a car") is None
    assert sniff_format(b"") is None


def test_scan_opens_only_extensionless_files(corpus: tuple[Path, list[CorpusCase]]) -> None:
    """Names decide; only files without an extension are sniffed (an audit hook sees opens)."""
    root, _ = corpus
    code = (
        "import json, sys\n"
        "from indexer.walk import scan\n"
        "opened = []\n"
        "sys.addaudithook(lambda e, a: opened.append(str(a[0])) if e == 'open' else None)\n"
        f"list(scan([{str(root)!r}]))\n"
        "print(json.dumps(opened))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    opened = {os.path.relpath(p, root) for p in json.loads(out.stdout)}
    assert opened == {"noext_jpeg", "README"}


@pytest.mark.timeout(60)
def test_unreadable_folder_is_reported_and_walk_goes_on(
    corpus: tuple[Path, list[CorpusCase]],
) -> None:
    root, _ = corpus
    code = (
        "skips = []\n"
        f"paths = [e.path for e in indexer.walk.scan([{str(root)!r}], on_skip=skips.append)]\n"
        "print(json.dumps([paths, [[s.path, s.reason] for s in skips]]))\n"
    )
    result = run_unprivileged(code)
    assert result.returncode == 0, result.stderr
    paths, skips = json.loads(result.stdout)
    rel_skips = {os.path.relpath(p, root): reason for p, reason in skips}
    assert rel_skips["locked"] == "permission denied"
    rel = {os.path.relpath(p, root) for p in paths}
    assert "plain.jpg" in rel and "unreadable.jpg" in rel  # listed; decode reports it
    assert "locked/secret.jpg" not in rel


def test_fingerprint_is_partial_and_content_based(tmp_path: Path) -> None:
    data = bytearray(os.urandom(300_000))
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(data)
    b.write_bytes(data)
    fa = fingerprint(str(a), len(data))
    assert fa == fingerprint(str(b), len(data))  # a moved file keeps its fingerprint
    data[150_000] ^= 0xFF  # the middle is not read: fast on big files
    b.write_bytes(data)
    assert fingerprint(str(b), len(data)) == fa
    data[-1] ^= 0xFF
    b.write_bytes(data)
    assert fingerprint(str(b), len(data)) != fa
    small = tmp_path / "small.png"
    small.write_bytes(b"abc")
    assert fingerprint(str(small), 3) != fingerprint(str(small), 4)  # size is hashed too
    with pytest.raises(FileNotFoundError):
        fingerprint(str(tmp_path / "gone.jpg"), 10)


@pytest.mark.timeout(120)
def test_scan_costs_about_one_stat_per_file(tmp_path: Path) -> None:
    """10k files in 100 folders: far below 2 s (measured ~0.1 s here), i.e. no per-file opens."""
    for d in range(100):
        folder = tmp_path / f"d{d:03}"
        folder.mkdir()
        for f in range(100):
            (folder / f"IMG_{f:04}.jpg").touch()
    start = time.perf_counter()
    count = sum(1 for _ in scan(tmp_path))
    elapsed = time.perf_counter() - start
    assert count == 10_000
    assert elapsed < 2.0, f"scan of 10k files took {elapsed:.2f} s"
