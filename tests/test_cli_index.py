"""`imgsearch index`: incremental updates, moves, deletions, the FAISS file, the model identity."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from imgsearch.library import Library
from tests.conftest import hits, make_pictures


def index(run, *args, code=0):
    return run("index", *args, code=code)


def stored_vectors(library: Path) -> dict[str, tuple[int, np.ndarray]]:
    with Library.open(library) as lib:
        out = {}
        for path in lib.known_files():
            found = lib.vector_for_path(path)
            if found:
                out[path] = found
        return out


def test_query_by_indexed_image_finds_itself_first(run, tiny_model, pictures, isolated_env):
    result = index(run, pictures[0].parent, "--model", tiny_model)
    assert "12 added" in result.stderr
    for pic in pictures:
        top = hits(run("query", "--image", pic, "--json", "-k", "3"))[0]
        assert top["path"] == str(pic)
        assert top["score"] == pytest.approx(1.0, abs=1e-4)


def test_faiss_ids_match_sqlite_rows(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    vectors = stored_vectors(isolated_env)
    assert len(vectors) == len(pictures)
    with Library.open(isolated_env) as lib:
        name = lib.meta()["faiss_file"]
    idx = faiss.read_index(str(isolated_env / name))
    assert idx.ntotal == len(pictures)
    for _path, (row_id, vec) in vectors.items():
        np.testing.assert_allclose(idx.reconstruct(row_id), vec, atol=1e-6)


def test_unchanged_rerun_embeds_nothing_and_loads_no_model(
    run, tiny_model, pictures, isolated_env, monkeypatch
):
    index(run, pictures[0].parent, "--model", tiny_model)
    before = stored_vectors(isolated_env)

    def no_model(*a, **k):
        raise AssertionError("the model was loaded for an unchanged tree")

    monkeypatch.setattr("imgsearch.encoder.load_encoder", no_model)
    result = index(run, pictures[0].parent)
    assert "0 added" in result.stderr and "12 unchanged" in result.stderr
    after = stored_vectors(isolated_env)
    assert {p: i for p, (i, _) in after.items()} == {p: i for p, (i, _) in before.items()}


def test_changed_file_is_embedded_again_in_place(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    before = stored_vectors(isolated_env)
    target = pictures[3]
    shutil.copyfile(pictures[7], target)  # new content
    os.utime(target, ns=(1, 1_000_000_000))
    result = index(run, pictures[0].parent)
    assert "1 updated" in result.stderr and "0 added" in result.stderr
    after = stored_vectors(isolated_env)
    assert after[str(target)][0] == before[str(target)][0]  # same id
    np.testing.assert_allclose(after[str(target)][1], before[str(pictures[7])][1], atol=1e-5)


def test_moved_file_keeps_its_vector_without_reembedding(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    before = stored_vectors(isolated_env)
    sub = pictures[0].parent / "renamed"
    sub.mkdir()
    new = sub / "moved.png"
    os.rename(pictures[2], new)
    result = index(run, pictures[0].parent)
    assert (
        "1 moved" in result.stderr and "0 added" in result.stderr and "0 removed" in result.stderr
    )
    after = stored_vectors(isolated_env)
    assert str(pictures[2]) not in after
    assert after[str(new)][0] == before[str(pictures[2])][0]
    np.testing.assert_array_equal(after[str(new)][1], before[str(pictures[2])][1])
    top = hits(run("query", "--image", new, "--json", "-k", "1"))[0]
    assert top["path"] == str(new)


def test_deleted_files_vanish_from_results(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    for gone in pictures[:4]:
        gone.unlink()
    result = index(run, pictures[0].parent)
    assert "4 removed" in result.stderr
    found = hits(run("query", "anything", "--json", "-k", "50"))
    assert {h["path"] for h in found} == {str(p) for p in pictures[4:]}


def test_indexing_one_folder_keeps_another(run, tiny_model, tmp_path, isolated_env):
    a = make_pictures(tmp_path / "a", 3, seed=1)
    b = make_pictures(tmp_path / "b", 3, seed=2)
    index(run, tmp_path / "a", "--model", tiny_model)
    index(run, tmp_path / "b")
    found = hits(run("query", "x", "--json", "-k", "50"))
    assert {h["path"] for h in found} == {str(p) for p in a + b}


def test_missing_faiss_file_is_rebuilt(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    for f in isolated_env.glob("vectors-*.faiss"):
        f.unlink()
    top = hits(run("query", "--image", pictures[5], "--json"))[0]
    assert top["path"] == str(pictures[5])
    index(run, pictures[0].parent)  # a writer puts the file back
    assert list(isolated_env.glob("vectors-*.faiss"))


def test_stale_faiss_file_is_detected_and_not_trusted(run, tiny_model, pictures, isolated_env):
    index(run, pictures[0].parent, "--model", tiny_model)
    (name,) = [f.name for f in isolated_env.glob("vectors-*.faiss")]
    # Replace the file with one whose vectors are wrong (same ids, same count, same name).
    idx = faiss.read_index(str(isolated_env / name))
    ids = faiss.vector_to_array(idx.id_map)
    bogus = faiss.IndexIDMap2(faiss.IndexFlatIP(idx.d))
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(ids), idx.d)).astype(np.float32)
    bogus.add_with_ids(vecs / np.linalg.norm(vecs, axis=1, keepdims=True), ids)
    faiss.write_index(bogus, str(isolated_env / name))
    for pic in pictures:
        assert hits(run("query", "--image", pic, "--json"))[0]["path"] == str(pic)


def test_different_model_is_refused_with_the_way_out(
    run, tiny_model, pictures, isolated_env, tmp_path
):
    from tests.support.models import make_random_model_dir

    index(run, pictures[0].parent, "--model", tiny_model)
    other = "local-dir:" + str(make_random_model_dir(tmp_path / "other", seed=1))
    result = index(run, pictures[0].parent, "--model", other, code=1)
    assert "was built with" in result.stderr and "--library" in result.stderr


def test_missing_root_is_a_clear_error(run, tiny_model, tmp_path):
    result = index(run, tmp_path / "nope", "--model", tiny_model, code=1)
    assert "nope" in result.stderr and "no such file" in result.stderr.lower()


def test_text_encoder_export_is_made_once_per_model(run, tiny_model, tmp_path, session_cache):
    make_pictures(tmp_path / "a", 2, seed=1)
    run("index", tmp_path / "a", "--model", tiny_model, "--library", tmp_path / "lib1")
    run("index", tmp_path / "a", "--model", tiny_model, "--library", tmp_path / "lib2")
    exports = list((session_cache / "imgsearch" / "text-encoders").iterdir())
    assert len(exports) >= 1
    one = tmp_path / "lib1" / "text-encoder" / "text_encoder.onnx.data"
    two = tmp_path / "lib2" / "text-encoder" / "text_encoder.onnx.data"
    assert one.stat().st_ino == two.stat().st_ino  # both link the one cached export
    # a library keeps working when the cache is wiped
    import shutil

    shutil.rmtree(session_cache / "imgsearch")
    assert hits(run("query", "x", "--json", "--library", tmp_path / "lib1"))


def test_gpu_decode_path_indexes_like_the_cpu_path(run, tiny_model, tmp_path, photos):
    """--decode gpu runs indexer.gpudecode (decode_jpeg) on the model's device; on a CPU-only
    machine that is the CPU, so the path is exercised here and must agree with CPU decoding."""
    import shutil

    src = sorted((photos / "imagenet-500").glob("*.JPEG"))[:10]
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for p in src:
        shutil.copyfile(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(src[0].read_bytes()[:2000])
    cpu, gpu = tmp_path / "cpu-lib", tmp_path / "gpu-lib"
    run("index", folder, "--model", tiny_model, "--library", cpu, "--decode", "cpu")
    result = run("index", folder, "--model", tiny_model, "--library", gpu, "--decode", "gpu")
    assert "10 added" in result.stderr and "1 skipped" in result.stderr
    a, b = stored_vectors(cpu), stored_vectors(gpu)
    assert set(a) == set(b) == {str(folder / p.name) for p in src}
    for path in a:
        assert float(a[path][1] @ b[path][1]) > 0.999, path


# ---- rough edges (issue 8) --------------------------------------------------------------------
def _noisy_pictures(folder: Path, n: int, size: int = 320) -> None:
    """Pictures of random noise: slow enough to decode that a run is still going when signalled."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"noise_{i:04d}.png", compress_level=1)


def test_ctrl_c_in_a_terminal_prints_one_line_and_no_worker_tracebacks(
    tiny_model, tmp_path, isolated_env
):
    """SIGINT goes to the whole foreground process group, decode workers and forkserver too."""
    import signal
    import subprocess

    from tests.support.harness import cli_argv, row_count, wait_until

    _noisy_pictures(tmp_path / "noise", 400)
    err = tmp_path / "stderr.txt"
    argv = cli_argv(
        "index", tmp_path / "noise", "--model", tiny_model, "--workers", "2", "--batch-size", "4"
    )
    with err.open("wb") as fe:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=fe, start_new_session=True)
    try:
        assert wait_until(lambda: (row_count(isolated_env) or 0) > 0, timeout=120)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(timeout=60) == 130, err.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    import time

    time.sleep(1.0)  # give any worker that would print a traceback the time to do it
    text = err.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    starting = ("loading model", "exporting the image encoder")  # a new model's first run
    lines = [line for line in text.splitlines() if not line.startswith(starting)]
    assert lines == [
        "interrupted: batches already stored are kept; run the same command to continue"
    ], text


def test_a_ctrl_c_that_python_swallowed_still_stops_the_run(run, tiny_model, tmp_path, monkeypatch):
    """Seen in CI: Ctrl-C landed in importlib's module-lock clean-up during the lazy import
    after the first batch; Python printed "Exception ignored ... KeyboardInterrupt" and the run
    went on to finish with status 0. It stops at the next batch boundary, the batch kept, with
    no traceback."""
    import signal
    import sys

    from imgsearch.clip import indexing
    from tests.support.harness import row_count

    class Swallows:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    real, calls = indexing.update_new, []

    def update_new(library, ids):  # type: ignore[no-untyped-def]
        calls.append(len(ids))
        if len(calls) == 1:
            Swallows()  # its KeyboardInterrupt is printed and ignored, as in the import
        return real(library, ids)

    monkeypatch.setattr(indexing, "update_new", update_new)
    printed: list[BaseException] = []  # what Python would print as "Exception ignored in"
    monkeypatch.setattr(sys, "unraisablehook", lambda info: printed.append(info.exc_value))
    pictures = make_pictures(tmp_path / "p", 12)
    lib = tmp_path / "lib"
    args = ("index", pictures[0].parent, "--model", tiny_model, "--library", lib)
    out = run(*args, "--batch-size", "4", code=130)
    assert calls == [4] and row_count(lib) == 4 and printed == []
    assert out.stderr.strip().splitlines()[-1].startswith("interrupted: batches already stored")
    monkeypatch.setattr(indexing, "update_new", real)
    out = run(*args)
    assert "8 added" in out.stderr and "4 unchanged" in out.stderr, out.stderr


def test_progress_bar_and_messages_share_a_terminal(tiny_model, tmp_path, isolated_env):
    """On a terminal: each message on its own line above the bar, and one rate (bar = summary)."""
    import fcntl
    import pty
    import re
    import struct
    import subprocess
    import termios

    from tests.support.harness import cli_argv

    make_pictures(tmp_path / "photos", 40)
    (tmp_path / "photos" / "junk.jpg").write_bytes(b"not a picture")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 150, 0, 0))  # 150 columns
    argv = cli_argv("index", tmp_path / "photos", "--model", tiny_model, "--batch-size", "8")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # cursor movement of the bar
    pieces = [p.strip() for p in re.split(r"[\r\n]", text) if p.strip()]
    for message in ("loading model", "skipping", "done in"):
        found = [p for p in pieces if message in p]
        assert found and all(p.startswith(message) for p in found), (message, pieces)
    bar_rates = re.findall(r"([0-9.]+) images/s, \d+ failed", text)
    summary = re.search(r"\(embedding ([0-9.]+) images/s\)", text)
    assert bar_rates and summary, text
    assert bar_rates[-1] == summary.group(1), (bar_rates, summary.group(0))


def test_failed_index_leaves_no_library_behind(run, tiny_model, tmp_path):
    library = tmp_path / "new-library"
    result = run("index", tmp_path / "no-such-folder", "--library", library, code=1)
    assert "no such file or folder" in result.stderr
    assert not library.exists()
    (tmp_path / "pics").mkdir()
    result = run("index", tmp_path / "pics", "--library", library, "--model", "ViT-Nope-99", code=1)
    assert "unknown model 'ViT-Nope-99'" in result.stderr
    assert not library.exists()
    # a folder the user made beforehand is kept, emptied of what the run wrote
    library.mkdir()
    (library / "notes.txt").write_text("mine")
    run("index", tmp_path / "no-such-folder", "--library", library, code=1)
    assert sorted(p.name for p in library.iterdir()) == ["notes.txt"]


def test_failed_index_is_recorded_as_failed_not_interrupted(run, tiny_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model.removeprefix("local-dir:"), model_dir)
    make_pictures(tmp_path / "photos", 4)
    run("index", tmp_path / "photos", "--model", f"local-dir:{model_dir}")
    make_pictures(tmp_path / "photos" / "more", 2, seed=5)
    shutil.rmtree(model_dir)
    result = run("index", tmp_path / "photos", code=1)
    assert "does not exist" in result.stderr
    info = json.loads(run("stats", "--json").stdout)
    assert info["last_run"]["status"] == "failed"
    assert info["images"] == 4  # the library that existed is kept


def test_empty_pretrained_is_a_clear_error(run, tmp_path):
    make_pictures(tmp_path / "photos", 2)
    result = run("index", tmp_path / "photos", "--model", "ViT-B-32", "--pretrained", "", code=1)
    assert "pretrained setting is empty" in result.stderr
    assert "checkpoint file ." not in result.stderr and "not found" not in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA warning")
def test_decode_gpu_without_cuda_warns_and_still_works(run, tiny_model, pictures):
    result = run("index", pictures[0].parent, "--model", tiny_model, "--decode", "gpu")
    assert "--decode gpu" in result.stderr and "CUDA is not available" in result.stderr
    assert "12 added" in result.stderr


def test_quiet_prints_only_errors(run, tiny_model, pictures):
    (pictures[0].parent / "junk.png").write_bytes(b"junk" * 10)
    args = ("index", pictures[0].parent, "--model", tiny_model, "--decode", "gpu", "-q")
    assert run(*args).stderr == ""
    assert "no such file" in run("index", "/no/such/folder", "-q", code=1).stderr


def test_errors_hint_keeps_the_library_that_was_used(run, tiny_model, pictures, tmp_path):
    library = tmp_path / "other library"
    (pictures[0].parent / "junk.png").write_bytes(b"junk" * 10)
    result = run("index", pictures[0].parent, "--model", tiny_model, "--library", library)
    hint = f"(see them all with: imgsearch errors --library '{library}')"
    assert hint in result.stderr
    listed = run("errors", "--library", library).stdout  # the hint, followed, works
    assert "junk.png" in listed


def test_jfif_is_indexed_and_raw_files_are_reported_unsupported(run, tiny_model, tmp_path):
    from PIL import Image

    folder = tmp_path / "camera"
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "photo.jfif", format="JPEG")
    raws = ["IMG_0001.CR2", "DSC_0002.nef", "photo.dng", "a.arw", "b.raf", "c.orf", "d.rw2"]
    for name in raws:  # TIFF inside, as most RAW formats are
        Image.new("RGB", (40, 30), (10, 10, 200)).save(folder / name, format="TIFF")
    result = run("index", folder, "--model", tiny_model)
    assert "1 added" in result.stderr and f"{len(raws)} skipped" in result.stderr
    assert f"{len(raws)} × camera RAW file: not supported" in result.stderr
    rows = json.loads(run("errors", "--json").stdout)
    assert {Path(r["path"]).name for r in rows} == set(raws)
    assert all("camera RAW file" in r["reason"] for r in rows)
    assert hits(run("query", "red", "--json"))[0]["path"].endswith("photo.jfif")
    # reported once: the next run finds them unchanged
    assert "skipping" not in run("index", folder).stderr
