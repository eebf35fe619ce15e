"""The ONNX image encoder: same vectors as torch, cached once per model, torch-free indexing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from imgsearch import exports, imageonnx
from imgsearch.decode import Decoded, decode
from tests.conftest import make_pictures
from tests.support.harness import real_photos

PROBE = """
import sys
from click.testing import CliRunner
from imgsearch.cli import cli
result = CliRunner().invoke(cli, {args!r})
heavy = sorted(m for m in ("torch", "open_clip", "torchvision") if m in sys.modules)
print(result.exit_code, heavy, "onnxruntime" in sys.modules)
print(result.stderr)
"""


def _pixels(files: list[Path], spec) -> np.ndarray:
    items = [decode(str(f), spec, max_pixels=200_000_000) for f in files]
    assert all(isinstance(i, Decoded) for i in items), items
    return np.stack([i.pixels for i in items])


def _both(model: str) -> tuple:
    """(torch Encoder, OnnxImageEncoder) of the same model, exporting into the test cache."""
    from imgsearch.encoder import load_encoder

    torch_enc = load_encoder(model, "", "cpu")
    folder = exports.image_export_dir(torch_enc.spec.name, torch_enc.spec.pretrained)
    exports.export_image_encoder(folder, torch_enc)
    return torch_enc, imageonnx.OnnxImageEncoder(folder)


def _assert_faithful(ref: np.ndarray, got: np.ndarray) -> None:
    cosines = np.sum(ref * got, axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    k = min(10, len(ref) - 1)
    top_ref = np.argsort(-(ref @ ref.T), axis=1)[:, 1 : k + 1]
    top_got = np.argsort(-(got @ got.T), axis=1)[:, 1 : k + 1]
    sims = ref @ ref.T
    for i, (a, b) in enumerate(zip(top_ref, top_got)):
        assert set(a) == set(b), f"self-query {i}: torch top-{k} {a}, onnx {b}"
        # the order may differ only between neighbours torch itself scores as tied
        assert np.all(np.abs(sims[i, a] - sims[i, b]) < 1e-5), (i, a, b)


def test_onnx_matches_torch_on_real_photos(tiny_model):
    """Image by image cosine >= 0.9999 and the same top-10 for every self-query."""
    files = real_photos(200)
    torch_enc, onnx_enc = _both(tiny_model)
    assert onnx_enc.spec == torch_enc.spec
    pixels = _pixels(files, torch_enc.spec.preprocess)
    got = np.concatenate([onnx_enc.embed_pixels(pixels[i : i + 32]) for i in range(0, 200, 32)])
    ref = np.concatenate([torch_enc.embed_pixels(pixels[i : i + 32]) for i in range(0, 200, 32)])
    assert got.shape == (200, torch_enc.dim) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    _assert_faithful(ref, got)


def test_onnx_matches_trained_torch_on_shapes(trained_model, tmp_path):
    """The tiny CLIP trained on shapes (non-random weights), on generated pictures."""
    files = make_pictures(tmp_path / "pics", 40, size=64)
    torch_enc, onnx_enc = _both(trained_model)
    pixels = _pixels(files, torch_enc.spec.preprocess)
    _assert_faithful(torch_enc.embed_pixels(pixels), onnx_enc.embed_pixels(pixels))
    manifest = json.loads((onnx_enc.export_dir / "manifest.json").read_text())
    assert manifest["self_check"]["min_cosine"] >= 0.9999
    assert manifest["self_check"]["top10_agreement"] == 1.0


def test_concurrent_runs_give_the_rows_of_one_run(tiny_model):
    """A batch split over one stream per core, in runs of at most RUN_IMAGES, comes back
    whole, in order, with the same vectors as one run on the whole batch (odd sizes too:
    1 image runs once; every stream gets as many runs, of sizes one apart)."""
    _, one = _both(tiny_model)
    pixels = _pixels(real_photos(33), one.spec.preprocess)
    parallel = imageonnx.OnnxImageEncoder(one.export_dir)
    parallel.streams = 3
    seen: list[int] = []
    run = parallel._run
    parallel._run = lambda batch: seen.append(len(batch)) or run(batch)
    single = imageonnx.OnnxImageEncoder(one.export_dir, threads=1)
    assert single.streams == 1
    assert imageonnx.RUN_IMAGES == 8  # the sizes below follow from it
    for n, runs in ((1, [1]), (2, [1, 1]), (24, [8] * 3), (33, [5, 5, 5, 6, 6, 6])):
        seen.clear()
        got, want = parallel.embed_pixels(pixels[:n]), single.embed_pixels(pixels[:n])
        assert got.shape == want.shape == (n, one.dim)
        assert np.allclose(got, want, atol=1e-6)
        assert sorted(seen) == runs, n


def test_first_run_exports_and_later_runs_reuse(run, tmp_path, pictures):
    from tests.support.models import make_random_model_dir

    model = "local-dir:" + str(make_random_model_dir(tmp_path / "fresh-model", seed=3))
    first = run("index", pictures[0].parent, "--model", model).stderr
    assert "exporting the image encoder (once per model) ..." in first
    assert "exporting the text encoder" in first
    # one torch load serves both exports (it was loaded twice, a second or more each)
    assert first.count("loading model") == 1, first
    assert imageonnx.exported(exports.image_export_dir(model, ""))
    other = tmp_path / "other-library"
    again = run("index", pictures[0].parent, "--model", model, "--library", other).stderr
    assert "exporting the image encoder" not in again
    assert "12 added" in again
    assert "(onnxruntime)" in again


def test_index_with_cached_export_imports_no_torch(run, tiny_model, pictures, tmp_path):
    """New library, new and changed files: onnxruntime embeds, torch/open_clip never load."""
    run("index", pictures[0].parent, "--model", tiny_model, "--library", tmp_path / "warm")
    more = make_pictures(tmp_path / "more", 9, seed=5)
    for library in (tmp_path / "cold", tmp_path / "cold"):  # a new library, then new files
        args = ["index", str(more[0].parent), "--model", tiny_model, "--library", str(library)]
        code = PROBE.format(args=args)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        status = out.stdout.strip().splitlines()[0]
        assert status == "0 [] True", out.stdout + out.stderr
        make_pictures(tmp_path / "more", 12, seed=6)  # overwrite some, add others: re-embed
    hits = json.loads(
        run("query", "a dog", "--library", tmp_path / "cold", "-k", "50", "--json").stdout
    )
    assert len(hits) == 12


def test_fallback_to_torch_says_so_once(run, tmp_path, pictures, monkeypatch):
    from tests.support.models import make_random_model_dir

    model = "local-dir:" + str(make_random_model_dir(tmp_path / "odd-model", seed=4))

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::odd_op' to ONNX is not supported")

    monkeypatch.setattr(imageonnx, "_export", unsupported)
    err = run("index", pictures[0].parent, "--model", model).stderr
    lines = [ln for ln in err.splitlines() if "cannot run on onnxruntime" in ln]
    assert len(lines) == 1, err
    assert "aten::odd_op" in lines[0] and "indexing with torch instead" in lines[0]
    assert "12 added" in err
    monkeypatch.undo()  # the failure is remembered: not retried, still said
    err = run("index", pictures[0].parent, "--model", model, "--library", tmp_path / "l2").stderr
    assert "exporting the image encoder" not in err
    assert sum("cannot run on onnxruntime" in ln for ln in err.splitlines()) == 1


def test_export_that_disagrees_with_torch_falls_back(run, tmp_path, pictures, monkeypatch):
    from tests.support.models import make_random_model_dir

    model = "local-dir:" + str(make_random_model_dir(tmp_path / "strict-model", seed=5))
    monkeypatch.setattr(imageonnx, "MIN_COSINE", 1.5)  # no export can pass this
    err = run("index", pictures[0].parent, "--model", model).stderr
    assert "disagrees with torch" in err and "indexing with torch instead" in err
    assert not list(exports.cache_root(exports.IMAGE).glob("*/manifest.json")) or all(
        "strict" not in p.read_text()
        for p in exports.cache_root(exports.IMAGE).glob("*/manifest.json")
    )


def test_runtime_flag_and_setting(run, tmp_path, pictures, isolated_env, monkeypatch):
    from tests.support.models import make_random_model_dir

    model = "local-dir:" + str(make_random_model_dir(tmp_path / "rt-model", seed=6))
    folder = exports.image_export_dir(model, "")
    err = run("index", pictures[0].parent, "--model", model, "--runtime", "torch").stderr
    assert "onnxruntime" not in err and not folder.exists()
    monkeypatch.setenv("IMGSEARCH_RUNTIME", "onnx")
    err = run("index", pictures[0].parent, "--library", tmp_path / "l2", "--model", model).stderr
    assert "exporting the image encoder" in err and imageonnx.exported(folder)
    bad = run("index", pictures[0].parent, "--runtime", "tensorrt", code=2)
    assert "tensorrt" in bad.stderr
    monkeypatch.setenv("IMGSEARCH_DEVICE", "cuda")
    clash = run("index", pictures[0].parent, code=1)
    assert "'runtime' is onnx" in clash.stderr and "cuda" in clash.stderr
    assert "Traceback" not in clash.stderr


def test_runtime_auto_picks_onnx_on_cpu():
    from imgsearch import config, runtime

    cpu = config.resolve(overrides={"device": "cpu"}, environ={})
    assert runtime.choose(cpu) == "onnx"
    assert runtime.choose(config.replace(cpu, device="cuda")) == "torch"
    assert runtime.choose(config.replace(cpu, device="mps")) == "torch"
    assert runtime.choose(config.replace(cpu, runtime="torch")) == "torch"


WORKER = textwrap.dedent(
    """
    import sys, json
    from imgsearch import runtime, config
    seen = []
    settings = config.resolve(overrides={"device": "cpu", "runtime": "onnx"}, environ={})
    enc = runtime.load_image_encoder(sys.argv[1], "", settings, on_status=seen.append)
    import numpy as np
    from imgsearch import imageonnx
    vec = enc.embed_pixels(imageonnx.probe_pixels(*enc.spec.preprocess.size, n=2))
    print(json.dumps({"type": type(enc).__name__, "exported": any(
        s.startswith("exporting the image encoder") for s in seen), "vec": vec[0].tolist()}))
    """
)


def test_two_processes_exporting_at_once_share_one_export(tmp_path):
    """Both start on an empty cache at once: one exports, the other waits and reuses it."""
    from tests.support.models import make_random_model_dir

    model = "local-dir:" + str(make_random_model_dir(tmp_path / "race-model", seed=7))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "race-cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, model], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o["type"] for o in outs] == ["OnnxImageEncoder"] * 2
    assert sorted(o["exported"] for o in outs) == [False, True]
    assert np.allclose(outs[0]["vec"], outs[1]["vec"])
    done = list((tmp_path / "race-cache" / "imgsearch" / "image-encoders").glob("*/manifest.json"))
    assert len(done) == 1
    assert not list(done[0].parent.glob(".export-*"))


def test_int8_is_opt_in_and_checked(run, tmp_path, pictures, monkeypatch):
    """onnx_precision = int8: its own export, self-checked (looser), fp32 stays the default."""
    from imgsearch import config
    from imgsearch.encoder import load_encoder
    from tests.support.models import make_random_model_dir

    assert config.resolve(environ={}).onnx_precision == "fp32"
    model = "local-dir:" + str(make_random_model_dir(tmp_path / "q-model", seed=8))
    monkeypatch.setenv("IMGSEARCH_ONNX_PRECISION", "int8")
    err = run("index", pictures[0].parent, "--model", model).stderr
    assert "12 added" in err and "once per model and precision: int8" in err
    assert "pre-processing" not in err  # onnxruntime's quantiser's advice is not imgsearch's
    folder = exports.image_export_dir(model, "", "int8")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["self_check"]["min_cosine"] >= 0.99
    assert not exports.image_export_dir(model, "").exists()
    torch_enc = load_encoder(model, "", "cpu")
    pixels = _pixels(pictures, torch_enc.spec.preprocess)
    got = imageonnx.OnnxImageEncoder(folder).embed_pixels(pixels)
    assert np.sum(got * torch_enc.embed_pixels(pixels), axis=1).min() >= 0.99
    torch_run = run(
        "index", pictures[0].parent, "--model", model, "--runtime", "torch",
        "--library", tmp_path / "lib-torch",
    ).stderr  # fmt: skip
    assert "onnx_precision int8 applies to the ONNX image encoder" in torch_run
    assert "holds vectors embedded at" not in err + torch_run  # each library has one precision
    more = make_pictures(tmp_path / "more", 3, seed=5)
    mixed = run("index", more[0].parent, "--library", tmp_path / "lib-torch").stderr
    assert "3 added" in mixed
    assert "holds vectors embedded at fp32; this run embeds at int8, close but not" in mixed
    stats = json.loads(run("stats", "--json", "--library", tmp_path / "lib-torch").stdout)
    assert stats["embedded_at"] == ["fp32", "int8"]
    monkeypatch.setenv("IMGSEARCH_ONNX_PRECISION", "fp16")
    bad = run("index", pictures[0].parent, code=1).stderr
    assert "IMGSEARCH_ONNX_PRECISION: setting 'onnx_precision'" in bad and "fp16" in bad


def test_torch_bf16_is_opt_in_and_runs_torch_on_the_cpu(run, tmp_path, pictures, monkeypatch):
    """torch_precision = bf16: auto then runs torch on the CPU (onnxruntime has no bf16 CPU
    kernels), with bf16 weights whose vectors stay close to fp32's; no image export is made.
    The default stays fp32 on the CPU, and onnx with bf16 is refused, naming both settings."""
    from imgsearch import config, runtime
    from imgsearch.encoder import load_encoder
    from imgsearch.library import Library
    from tests.support.models import make_random_model_dir

    default = config.resolve(overrides={"device": "cpu"}, environ={})
    assert default.torch_precision == "auto" and runtime.choose(default) == "onnx"
    assert runtime.choose(config.replace(default, torch_precision="bf16")) == "torch"
    model = "local-dir:" + str(make_random_model_dir(tmp_path / "bf16-model", seed=9))
    fp32 = load_encoder(model, "", "cpu")
    assert fp32.precision == "fp32" and str(fp32.dtype) == "torch.float32"

    monkeypatch.setenv("IMGSEARCH_TORCH_PRECISION", "bf16")
    err = run("index", pictures[0].parent, "--model", model, "--library", tmp_path / "lib").stderr
    assert "12 added" in err and "bf16" in err and "onnxruntime" not in err
    assert not exports.image_export_dir(model, "").exists()
    lib = Library.open(tmp_path / "lib")
    files = sorted(pictures)
    ref = fp32.embed_pixels(_pixels(files, fp32.spec.preprocess))
    got = np.stack([lib.vector_for_path(str(f))[1] for f in files]).astype(np.float32)
    cosines = np.sum(ref * got, axis=1)
    assert cosines.min() >= 0.999 and not np.allclose(ref, got, atol=1e-6), cosines

    monkeypatch.setenv("IMGSEARCH_RUNTIME", "onnx")
    clash = run("index", pictures[0].parent, "--model", model, code=1).stderr
    assert "'torch_precision' is bf16" in clash and "'runtime' is onnx" in clash
    assert "IMGSEARCH_TORCH_PRECISION and environment variable IMGSEARCH_RUNTIME" in clash
    monkeypatch.delenv("IMGSEARCH_RUNTIME")
    monkeypatch.setenv("IMGSEARCH_ONNX_PRECISION", "int8")
    both = run("index", pictures[0].parent, "--model", model, code=1).stderr
    assert "PRECISION and environment variable IMGSEARCH_ONNX_PRECISION" in both
    assert "choose one" in both
    monkeypatch.delenv("IMGSEARCH_ONNX_PRECISION")
    monkeypatch.setenv("IMGSEARCH_TORCH_PRECISION", "fp8")
    bad = run("index", pictures[0].parent, "--model", model, code=1).stderr
    assert "IMGSEARCH_TORCH_PRECISION" in bad and "fp8" in bad


def test_random_weights_are_announced_when_the_export_is_cached(tiny_model, monkeypatch, caplog):
    """`--pretrained none` says it has random weights on the torch-free path too."""
    from imgsearch import config, runtime
    from imgsearch.encoder import load_encoder

    spec = load_encoder(tiny_model, "", "cpu").spec

    class Cached:
        def __init__(self, folder: object) -> None:
            self.spec = spec

    monkeypatch.setattr(imageonnx, "exported", lambda folder: True)
    monkeypatch.setattr(imageonnx, "OnnxImageEncoder", Cached)
    settings = config.resolve(overrides={"device": "cpu"}, environ={})
    caplog.clear()
    assert isinstance(runtime.load_image_encoder("ViT-B-32", "none", settings), Cached)
    assert "uses random weights" in caplog.text
    caplog.clear()
    runtime.load_image_encoder("ViT-B-32", "laion2b_s34b_b79k", settings)
    assert "random weights" not in caplog.text


def test_bf16_on_a_cpu_without_amx_says_it_may_be_slower(tmp_path):
    from imgsearch import runtime

    with_amx = tmp_path / "amx"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert runtime.cpu_without_amx(str(with_amx)) is None
    assert "no AMX" in (runtime.cpu_without_amx(str(without)) or "")
    assert runtime.cpu_without_amx(str(tmp_path / "missing")) is None


def test_patch_embedding_is_the_convolution_with_mean_and_std_folded_in(tiny_model):
    """The ViT's patch conv becomes one MatMul over pixel patches: on NCHW normalised input
    (rclip's graph in benchmarks/peers.py) and on raw NHWC pixels with the model's mean/std in
    its weights (ours), encode_image gives the conv's vectors; a conv it cannot restate (here
    one with padding) is left alone."""
    import copy

    import torch

    from imgsearch.encoder import load_encoder

    enc = load_encoder(tiny_model, "", "cpu")
    pre = enc.spec.preprocess
    pixels = torch.from_numpy(_pixels(real_photos(6), pre))
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    normalised = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        want = enc.model.encode_image(normalised)
        nchw, nhwc = copy.deepcopy(enc.model), copy.deepcopy(enc.model)
        assert imageonnx._patch_embedding(nchw)
        assert imageonnx._patch_embedding(nhwc, pre.mean, pre.std)
        assert torch.allclose(nchw.encode_image(normalised), want, atol=1e-5)
        assert torch.allclose(nhwc.encode_image(pixels.float()), want, atol=1e-5)
        padded = copy.deepcopy(enc.model)
        padded.visual.conv1.padding = (1, 1)
        assert not imageonnx._patch_embedding(padded, pre.mean, pre.std)
        assert isinstance(padded.visual.conv1, torch.nn.Conv2d)


def test_patch_embedding_on_a_wide_grid_with_a_conv_bias():
    """Non-square input (4 x 6 patches) and a patch conv with a bias, both layouts."""
    import copy

    import torch
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = VisionTransformer(
                image_size=(32, 48), patch_size=8, width=32, layers=1, heads=2, mlp_ratio=2,
                output_dim=16,
            )  # fmt: skip
            self.visual.conv1 = torch.nn.Conv2d(3, 32, kernel_size=8, stride=8, bias=True)

    pixels = torch.randint(0, 256, (3, 32, 48, 3)).float()
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    normalised = (pixels.permute(0, 3, 1, 2) / 255 - m) / s
    with torch.no_grad():
        base = Model().eval()
        want = base.visual(normalised)
        nchw, nhwc = copy.deepcopy(base), copy.deepcopy(base)
        assert imageonnx._patch_embedding(nchw)
        assert imageonnx._patch_embedding(nhwc, mean, std)
        assert torch.allclose(nchw.visual(normalised), want, atol=1e-5)
        assert torch.allclose(nhwc.visual(pixels), want, atol=1e-5)


def test_last_block_runs_for_the_class_token_alone():
    """A 'tok'-pooled ViT (with and without layer scale, LayerNorm before or after pooling)
    gives the same vectors with its last block on the class token only; towers that read
    every token of that block (average pooling, attention pooling) are left alone."""
    import copy

    import torch
    from open_clip.transformer import VisionTransformer

    class Model(torch.nn.Module):
        def __init__(self, **extra: object) -> None:
            super().__init__()
            self.visual = VisionTransformer(
                image_size=32, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=2,
                output_dim=16, **extra,
            ).eval()  # fmt: skip
            for name, value in self.visual.named_parameters():  # away from initial 0s and 1s
                if name.endswith(("bias", "gamma")) or ".ln_" in name:
                    value.data.normal_()

    torch.manual_seed(0)
    pixels = torch.randn(3, 3, 32, 32)
    for extra in ({}, {"ls_init_value": 0.5}, {"final_ln_after_pool": True}):
        model = Model(**extra)
        pruned = copy.deepcopy(model)
        with torch.no_grad():
            assert imageonnx._pooled_token_only(pruned), extra
            imageonnx._plain_attention(pruned)
            want, got = model.visual(pixels), pruned.visual(pixels)
        assert got.shape == want.shape == (3, 16)
        assert torch.allclose(got, want, atol=1e-5), (extra, (got - want).abs().max())
    for extra in (
        {"pool_type": "avg"},
        {"attentional_pool": True, "attn_pooler_heads": 4},
        {"output_tokens": True},
    ):
        model = Model(**extra)
        last = model.visual.transformer.resblocks[-1]
        assert not imageonnx._pooled_token_only(model), extra
        assert model.visual.transformer.resblocks[-1] is last


def test_exported_graph_takes_pixels_without_a_normalisation_pass(tiny_model):
    """The export says where the mean/std went, and its graph has no Conv, Sub or Div."""
    import onnx

    _, onnx_enc = _both(tiny_model)
    manifest = json.loads((onnx_enc.export_dir / "manifest.json").read_text())
    assert manifest["normalisation"] == "folded into the patch embedding"
    assert manifest["last_block"] == "the pooled token only"
    graph = onnx.load(str(onnx_enc.export_dir / imageonnx.GRAPH), load_external_data=False)
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {"Conv", "Sub", "Div"}, ops


def _session_builders(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The names of the threads that build an image session, in order, from now on."""
    import threading

    built: list[str] = []
    real = imageonnx._session

    def session(export_dir, threads):  # type: ignore[no-untyped-def]
        built.append(threading.current_thread().name)
        return real(export_dir, threads)

    monkeypatch.setattr(imageonnx, "_session", session)
    return built


def _noting(function, steps: list[str], step: str):  # type: ignore[no-untyped-def]
    def noted(*args, **kwargs):  # type: ignore[no-untyped-def]
        steps.append(step)
        return function(*args, **kwargs)

    return noted


def test_a_first_run_builds_its_onnx_session_while_it_walks(run, tiny_model, tmp_path, monkeypatch):
    """A run into an empty library starts building the cached export's session on a second
    thread before it walks (and the decoders' server); the encoder takes that session. A run
    into a library with vectors builds it when it needs it. A failed build still reaches the
    user as the load error, naming the file."""
    import threading

    from indexer import pipeline

    first = make_pictures(tmp_path / "a", 5)
    run("index", first[0].parent, "--model", tiny_model, "--library", tmp_path / "warm")
    built = _session_builders(monkeypatch)
    steps: list[str] = []
    for owner, name, step in (
        (imageonnx, "prefetch", "session"),
        (pipeline, "start_decode_server", "decoders"),
        (pipeline, "scan", "walk"),
    ):
        monkeypatch.setattr(owner, name, _noting(getattr(owner, name), steps, step))
    lib = tmp_path / "lib"
    out = run("index", first[0].parent, "--model", tiny_model, "--library", lib)
    assert "5 added" in out.stderr
    assert built == ["onnx-session"] and not imageonnx._PREFETCHED
    assert steps == ["session", "decoders", "walk"]
    more = make_pictures(tmp_path / "b", 3, seed=4)
    assert "3 added" in run("index", more[0].parent, "--library", lib).stderr
    assert built == ["onnx-session", threading.current_thread().name]
    assert steps[3:] == ["walk"]

    def broken(export_dir, threads):  # type: ignore[no-untyped-def]
        built.append(threading.current_thread().name)
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF")

    monkeypatch.setattr(imageonnx, "_session", broken)
    out = run(
        "index", first[0].parent, "--library", tmp_path / "new", "--model", tiny_model, code=1
    )
    assert "cannot load" in out.stderr and "INVALID_PROTOBUF; delete" in out.stderr, out.stderr
    assert built[-1] == "onnx-session" and not imageonnx._PREFETCHED


def test_a_session_built_before_the_export_changed_is_not_handed_out(tiny_model, monkeypatch):
    """The early session is keyed by the graph file's identity: rewritten since (a re-export),
    the encoder builds its own."""
    import threading

    _, enc = _both(tiny_model)
    built = _session_builders(monkeypatch)
    graph = enc.export_dir / imageonnx.GRAPH
    imageonnx.prefetch(enc.export_dir)
    imageonnx.OnnxImageEncoder(enc.export_dir)
    assert built == ["onnx-session"]
    imageonnx.prefetch(enc.export_dir)
    st = graph.stat()
    os.utime(graph, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    imageonnx.OnnxImageEncoder(enc.export_dir)
    assert built == ["onnx-session", "onnx-session", threading.current_thread().name]
    imageonnx._PREFETCHED.clear()
