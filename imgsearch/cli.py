"""The `imgsearch` command: parse, call the library, render; heavy imports stay inside commands."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import click

from imgsearch import config as config_mod
from imgsearch.errors import ImgsearchError
from imgsearch.output import echo, human_bytes, render_hits, render_paths, render_rows, warn
from imgsearch.paths import display

# Commands that write nothing: when one has finished, the process leaves without the
# interpreter's shutdown (module teardown, onnxruntime's session freed), ~40 ms of a 0.4 s cold
# query (benchmarks/peers.py). Other write commands exit normally, so every clean-up runs.
READ_ONLY = frozenset({"query", "similar", "stats", "errors", "facets", "folders"})
# Write commands that, once they have succeeded (everything committed, the library closed and
# unlocked, Ray/Spark and the decode pools shut down by the run itself), run the atexit
# callbacks and then leave the same way: the teardown of a fresh `index` (onnxruntime's weights
# freed, hundreds of modules) is ~0.2 s. What is skipped: joining non-daemon threads (an unused
# early session build, idle executor threads: nothing they hold is written anywhere) and the
# module teardown.
LEAVE_AFTER_SUCCESS = frozenset({"index"})
_RAN: dict[str, str] = {}  # the subcommand this process ran, for main()

# What Ctrl-C leaves behind, per command; the others had nothing to keep.
INTERRUPTED = {
    "index": "interrupted: batches already stored are kept; run the same command to continue",
}


class Group(click.Group):
    """Turns every ImgsearchError into one clean message and exit status 1; nothing else leaks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)  # bare `imgsearch`: help on stdout, 0
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from imgsearch.query import QueryError

        try:
            return super().invoke(ctx)
        except QueryError as err:
            raise click.UsageError(str(err)) from err
        except ImgsearchError as err:
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            warn(INTERRUPTED.get(ctx.invoked_subcommand or "", "interrupted"))
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if (ctx.obj or {}).get("verbose"):
                raise
            raise click.ClickException(
                f"unexpected error: {type(err).__name__}: {err} (run with -v for details, and "
                f"please report it)"
            ) from err
        finally:
            _RAN["command"] = ctx.invoked_subcommand or ""  # known once the group parsed it


class _StderrLog(logging.Handler):
    """Log records as `imgsearch: message` lines on stderr (the current one, so CliRunner sees
    them too), above the progress bar while `index` shows one."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("imgsearch: %(message)s"))
        self.say: Callable[[str], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            (self.say or warn)(self.format(record))
        except Exception:
            self.handleError(record)


_LOG = _StderrLog()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Settings file (default: ~/.config/imgsearch/config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log diagnostics to stderr.")
@click.version_option(package_name="imgsearch")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, verbose: bool) -> None:
    """Semantic image search: index photo folders with CLIP, search them by text or example.

    \b
    Example:
      imgsearch index ~/Pictures
      imgsearch query "a dog on a beach"
      imgsearch query dog + beach - people --json
      imgsearch similar ~/Pictures/cat.jpg
    """
    root = logging.getLogger()
    if _LOG not in root.handlers:
        root.addHandler(_LOG)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    ctx.obj = {"config_file": config_file, "verbose": verbose}


def library_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--library",
        "library",
        type=click.Path(),  # a file here is refused in config.resolve, whichever layer set it
        help="Library folder (env IMGSEARCH_LIBRARY; default: XDG data dir).",
    )(fn)


def settings_from(ctx: click.Context, **flags: Any) -> config_mod.Settings:
    return config_mod.resolve(ctx.obj["config_file"], overrides=flags)


# The output formats of every command that lists hits: (flags, format, help), in --help order.
OUTPUT_FORMATS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--json",), "json", "Print a JSON array of hits."),
    (("--paths",), "paths", "Print exact paths only, one per line."),
    (("-0", "--null"), "null", "Print exact paths, each ended by a NUL byte (for xargs -0)."),
)


def _pick_format(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Store the chosen output format as `fmt`; two different ones are a usage error."""
    ctx.params.setdefault("fmt", None)
    if not value or param.name is None:
        return
    chosen = param.name.removeprefix("fmt_")
    if ctx.params["fmt"] not in (None, chosen):
        flags = {fmt: flags[-1] for flags, fmt, _ in OUTPUT_FORMATS}
        raise click.UsageError(
            f"{flags[ctx.params['fmt']]} and {flags[chosen]} cannot be used together; pick one",
            ctx,
        )
    ctx.params["fmt"] = chosen


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The OUTPUT_FORMATS flags, the same on every command that lists hits (passed on as `fmt`:
    None for the table); giving two of them is a usage error."""
    for flags, fmt, text in reversed(OUTPUT_FORMATS):
        fn = click.option(
            *flags,
            f"fmt_{fmt}",
            is_flag=True,
            expose_value=False,
            callback=_pick_format,
            help=text,
        )(fn)
    return fn


def _help(text: str, key: str) -> str:
    """Option help with the packaged default of its setting (the option itself defaults to
    None, so that config files and environment variables still apply)."""
    value = config_mod.packaged_defaults().get(key)
    return text if value is None else f"{text}  [default: {value}]"


def query_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--cutoff",
        help="Relevance cutoff: auto (decided per query), none, or a score such as 0.25.",
    )(fn)
    fn = click.option(
        "--in",
        "folder",
        type=click.Path(file_okay=False, exists=True),
        help="Only return images inside this folder.",
    )(fn)
    fn = click.option(
        "--min-score",
        type=float,
        help=_help("Drop hits below this cosine similarity (see README: Scores).", "min_score"),
    )(fn)
    fn = click.option(
        "-k",
        "--limit",
        type=click.IntRange(min=1),
        help=_help("Number of results.", "limit"),
    )(fn)
    return fn


# ---- index ------------------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@library_option
@click.option(
    "--model",
    help=_help("open_clip model name, hf-hub:org/repo or local-dir:/path.", "model"),
)
@click.option(
    "--pretrained",
    help=_help("Pretrained tag, checkpoint file, or 'none' (random weights).", "pretrained"),
)
@click.option("--device", help=_help("auto, cpu, cuda, cuda:N or mps.", "device"))
@click.option(
    "--runtime",
    type=click.Choice(config_mod.RUNTIMES),
    help=_help("Image model runtime: onnx (CPU), torch, or auto (onnx on the CPU).", "runtime"),
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help=_help("Images per model call.", "batch_size"),
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help=_help("Decode processes (0 = one per core).", "workers"),
)
@click.option(
    "--decode",
    type=click.Choice(config_mod.DECODE_MODES),
    help=_help("Decode JPEGs on the cpu, the gpu, or auto (gpu with a CUDA model).", "decode"),
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray", "spark"]),
    default="local",
    show_default=True,
    help="Embed here, on a Ray cluster, or on Spark (pip install 'imgsearch[ray]'; docs/ray.md).",
)
@click.option(
    "--address",
    help="Ray cluster (10.0.0.1:6379) or Spark master (spark://host:7077) to use; default local.",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    help="Ray actors holding the model (default: one per GPU, else one per CPU).",
)
@click.option("--wait", is_flag=True, help="Wait for another run on the same library to finish.")
@click.option("--thumbnails", is_flag=True, help="Also make the web UI's grid thumbnails now.")
@click.option(
    "--allow-nested",
    is_flag=True,
    help="Allow the library inside a photo folder, or in a folder that holds other files.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Only errors: no progress, warnings, skips or summary."
)
@click.pass_context
def index(
    ctx: click.Context,
    paths: tuple[str, ...],
    library: str | None,
    model: str | None,
    pretrained: str | None,
    device: str | None,
    runtime: str | None,
    batch_size: int | None,
    workers: int | None,
    decode: str | None,
    engine: str,
    address: str | None,
    actors: int | None,
    wait: bool,
    thumbnails: bool,
    allow_nested: bool,
    quiet: bool,
) -> None:
    """Add the images under PATHS to the library, or bring it up to date.

    The folders become the library's roots; with no PATHS, every root is indexed again.
    Unchanged files cost a stat; changed files are embedded again, moved files keep their
    vectors, deleted files leave the library. Unreadable files are reported and skipped.
    Settings without a flag (onnx_precision, torch_precision, max_pixels, skip_hidden,
    follow_symlinks) are set in config.toml or as IMGSEARCH_<KEY> (README: Configuration).

    \b
    Example:
      imgsearch index ~/Pictures ~/Phone
      imgsearch index                      # all the library's folders again
      imgsearch index ~/Pictures --model local-dir:/models/clip
      imgsearch index --thumbnails          # and the thumbnails imgsearch serve shows
      imgsearch index /mnt/photos --engine ray --address 10.0.0.1:6379
    """
    from imgsearch.library import DB_NAME, Library
    from indexer import pipeline
    from indexer.roots import check_location, check_new_library_folder

    if quiet and not ctx.obj["verbose"]:
        logging.getLogger().setLevel(logging.ERROR)
    settings = settings_from(
        ctx,
        library=library,
        model=model,
        pretrained=pretrained,
        device=device,
        runtime=runtime,
        batch_size=batch_size,
        workers=workers,
        decode=decode,
    )
    embed_all = None
    if engine == "ray":
        from indexer import rayengine

        rayengine.import_ray()  # before anything is written: say how to install it
        rayengine.check_reachable(address)
        embed_all = rayengine.embedder(rayengine.RayOptions(address=address, actors=actors or 0))
    elif engine == "spark":
        from indexer import sparkengine

        if actors:
            raise click.UsageError("--actors is for --engine ray (Spark: the master's cores)")
        sparkengine.import_spark()
        embed_all = sparkengine.embedder(sparkengine.SparkOptions(master=address))
    elif address or actors:
        raise click.UsageError("--address and --actors need --engine ray (or spark)")
    if not paths and not (settings.library_path / DB_NAME).is_file():
        raise click.UsageError("give the folders to index, e.g.  imgsearch index ~/Pictures")
    check_new_library_folder(str(settings.library_path), allowed=allow_nested)
    check_location(str(settings.library_path), paths, allowed=allow_nested)
    progress = _progress_bar(quiet)
    say = progress.write if progress else warn  # messages on their own lines above the bar
    _LOG.say = say
    created = _NewLibrary(settings.library_path)
    if created.fresh:  # a typo in the model name must not leave a library behind
        from imgsearch.encoder import check_model_name

        check_model_name(settings.model, settings.pretrained)
    lib = Library.open(settings.library_path, create=True)
    try:
        with lib, lib.write_lock(wait=wait):
            created.locked = True
            if not paths and not any(r.kind == "root" for r in lib.roots()):
                raise click.UsageError(
                    f"library {display(str(lib.path))} has no folders yet: imgsearch index PATH"
                )
            try:
                name, weights = pipeline.choose_model(
                    lib, settings, explicit=bool(model or pretrained)
                )

                @functools.cache
                def load() -> Any:
                    """torch's model, loaded at most once a run (image and text exports)."""
                    from imgsearch.encoder import load_encoder

                    if not quiet:
                        say(f"loading model {name}{' / ' + weights if weights else ''} ...")
                    return load_encoder(name, weights, settings.device)

                def load_images() -> Any:
                    from imgsearch import runtime as runtime_mod

                    return runtime_mod.load_image_encoder(
                        name, weights, settings, on_status=None if quiet else say,
                        on_warning=say, load_torch=load,
                    )  # fmt: skip

                def prefetch() -> None:
                    from imgsearch import runtime as runtime_mod

                    runtime_mod.prefetch_image_encoder(name, weights, settings)

                result = pipeline.run(
                    lib,
                    list(paths),
                    settings,
                    load_encoder=load_images,
                    load_torch=load,
                    prefetch=prefetch,
                    model=(name, weights),
                    on_progress=progress.update if progress else None,
                    on_skip=None
                    if quiet
                    else lambda path, reason: say(f"skipping {display(path)}: {reason}"),
                    on_status=None if quiet else say,
                    allow_nested=allow_nested,
                    embed_all=embed_all,
                )
            except BaseException:
                with contextlib.suppress(ImgsearchError):  # cannot tell: keep it
                    created.stored = lib.count() > 0
                raise
    except BaseException:
        created.discard_if_empty()
        raise
    finally:
        _LOG.say = None
        if progress:
            progress.close()
    if not quiet:
        for old, new in result.renamed:
            warn(f"{display(old)} is gone; its photos were found under {display(new)} (moved)")
        for root, count, reason in result.missing:
            warn(
                f"folder {display(root)} {reason}: keeping its {count} photos, left out of "
                f"results until it is back (or: imgsearch forget {display(root)})"
            )
    if not quiet:
        library_flags = [("--config", ctx.obj["config_file"])]
        library_flags.append(("--library", settings.library_path if library else None))
        warn(_summary(result, library_flags))
    if thumbnails:
        _make_thumbnails(settings, quiet)


def _make_thumbnails(settings: Any, quiet: bool) -> None:
    """`index --thumbnails`: imgsearch/thumbs.py's grid thumbnails, into serve's cache."""
    from imgsearch.library import Library
    from imgsearch.thumbs import pregenerate

    with Library.open(settings.library_path) as lib:
        made, cached, failed = pregenerate(
            lib, max_bytes=settings.thumbnail_cache_mb * 2**20, max_pixels=settings.max_pixels
        )
    if not quiet:
        for path, reason in failed:
            warn(f"skipping thumbnail of {display(path)}: {reason}")
        warn(f"thumbnails: {made} made, {cached} already cached, {len(failed)} failed")


class _NewLibrary:
    """A library folder this run creates: a run that fails before storing anything removes
    what it made, so a typo or an offline model leaves no empty library behind."""

    def __init__(self, path: Any) -> None:
        from imgsearch.library import DB_NAME

        self.path = path
        self.fresh = not (path / DB_NAME).exists()
        self.before = set(os.listdir(path)) if self.fresh and path.is_dir() else None
        self.locked = False  # only the lock holder may remove (another run may be creating it)
        self.stored = True

    def discard_if_empty(self) -> None:
        import shutil

        if not (self.fresh and self.locked) or self.stored:
            return
        if self.before is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - self.before:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def _summary(result: Any, given: Sequence[tuple[str, Any]] = ()) -> str:
    """The run's one-paragraph report; `given` are the (flag, value) pairs that chose the
    library, repeated in the hint so that it works when copied."""
    rate = result.embedded / result.embed_seconds if result.embed_seconds > 0 else 0.0
    parts = [
        f"{result.added} added",
        f"{result.updated} updated",
        f"{result.moved} moved",
        f"{result.removed} removed",
        f"{len(result.skipped)} skipped",
        f"{result.unchanged} unchanged",
    ]
    text = f"done in {result.seconds:.1f} s"
    if rate:
        text += f" (embedding {rate:.1f} images/s)"
    text += ": " + ", ".join(parts)
    if result.shared:
        text += f" ({result.shared} byte-identical copies reused a vector)"
    if result.skipped:
        import shlex

        reasons = Counter(reason for _, reason in result.skipped)
        text += "\nskipped: " + "; ".join(f"{n} × {r}" for r, n in reasons.most_common(8))
        where = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in given if value)
        text += f"\n(see them all with: imgsearch errors{where})"
    return text


class _Bar:
    """tqdm on stderr, only on a terminal. It shows the rate the summary prints (images stored
    per second since the first batch started, from pipeline.Progress), not tqdm's own."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            unit="img",
            file=sys.stderr,
            dynamic_ncols=True,
            desc="embedding",
            bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            postfix="waiting for the model",
        )

    def update(self, p: Any) -> None:
        self.bar.total = p.total
        self.bar.n = p.done
        if p.total:
            self.bar.bar_format = (
                "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
            )
        rate = p.embedded / p.seconds if p.seconds > 0 else 0.0
        self.bar.set_postfix_str(f"{rate:.1f} images/s, {p.failed} failed", refresh=False)
        self.bar.refresh()

    def write(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(quiet: bool) -> _Bar | None:
    return _Bar() if not quiet and sys.stderr.isatty() else None


# ---- query / similar --------------------------------------------------------------------------
def _searcher(settings: config_mod.Settings) -> Any:
    """The CLI's Searcher, on settings the command resolved once."""
    if "numpy" not in sys.modules:
        # One query is a handful of small products: OpenBLAS's thread pool, started when numpy
        # loads, only adds to a one-shot process's start (benchmarks/peers.py, cold query).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from imgsearch.search import Searcher

    return Searcher(settings.library_path, settings=settings, one_shot=True)


class QueryCommand(click.Command):
    """Keeps `-camera:pixel` (a negated filter) away from click's option parser, which would
    take `-has:gps` for -h and `-kitchen:...` for -k."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from imgsearch.query import negated_filter_word

        return super().parse_args(
            ctx, [_NEG + a[1:] if negated_filter_word(a) else a for a in args]
        )


_NEG = "\x1f"  # stands for the leading '-' of a negated filter while click parses


def _restore(words: tuple[str, ...]) -> list[str]:
    return ["-" + w[1:] if w.startswith(_NEG) else w for w in words]


@cli.command(cls=QueryCommand)
@click.argument("terms", nargs=-1)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Query by an example image (repeatable).",
)
@click.option(
    "--minus", "minus", multiple=True, help="Text to push results away from (repeatable)."
)
@click.option(
    "--templates",
    type=click.Choice(config_mod.TEMPLATE_MODES),
    help=_help("Prompt templates: none, photo or ensemble.", "templates"),
)
@click.option("--lang", help="Query language for NLLB models, e.g. kor_Hang (default: auto).")
@query_options
@output_options
@library_option
@click.pass_context
def query(
    ctx: click.Context,
    terms: tuple[str, ...],
    images: tuple[str, ...],
    minus: tuple[str, ...],
    templates: str | None,
    lang: str | None,
    limit: int | None,
    min_score: float | None,
    folder: str | None,
    cutoff: str | None,
    fmt: str | None,
    library: str | None,
) -> None:
    """Find images matching a text, an example image, filters, or a mix.

    TERMS are texts joined by + and -, with optional weights N*text and @FILE for images,
    and filters KEY:VALUE (after: before: year: month: camera: lens: in: ext: has: near:
    tag: album:; `|` for OR, a leading - negates). Filters alone list photos newest first.

    \b
    Example:
      imgsearch query "a dog on a beach"
      imgsearch query dog + beach - people -k 20
      imgsearch query "0.5*sunset" + @holiday.jpg --json
      imgsearch query --image cat.jpg --minus blurry --paths
      imgsearch query beach after:2021-06 camera:pixel -ext:png
      imgsearch query year:2023 has:gps
      imgsearch query "빨간 원" --lang kor_Hang
    """
    from imgsearch.query import Filter, Term, parse

    settings = settings_from(ctx, library=library, templates=templates, cutoff=cutoff, lang=lang)
    q = parse(
        _restore(terms), k=limit, min_score=min_score, templates=templates, cutoff=settings.cutoff
    )
    q = q.with_terms(*(Term("image", p) for p in images), *(Term("text", t, -1.0) for t in minus))
    if folder is not None:
        q = replace(q, filters=(*q.filters, Filter("in", (folder,))))
    if not q.terms and not q.filters:
        raise click.UsageError(
            "give a text to search for, --image FILE or a filter "
            "(e.g. imgsearch query dog + beach - people)"
        )
    with _searcher(settings) as searcher:
        result = searcher.search(q)
        _print_result(result, fmt, searcher.settings, min_score, q)


def _print_result(
    result: Any,
    fmt: str | None,
    settings: config_mod.Settings,
    min_score: float | None,
    query: Any,
) -> None:
    """Hits on stdout; on stderr what the search did: missing roots, the cutoff, and when no
    hit remains, why (the filters, --min-score)."""
    echo(render_hits(result.hits, fmt or "table"))
    for root, count, reason in result.left_out:
        warn(f"note: {count} photos under {display(root)} are left out: the folder {reason}")
    if result.cutoff is not None:
        warn(result.cutoff.describe())
    if result.hits:
        return
    if result.matched == 0:
        named = " ".join(display(str(f)) for f in query.filters)
        warn(f"no results: no photos match {named}")
        return
    floor = settings.min_score if min_score is None else min_score
    why = f": no image scores at least {floor} (lower --min-score)" if floor > -1 else ""
    warn("no results" + why)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@query_options
@output_options
@library_option
@click.pass_context
def similar(
    ctx: click.Context,
    file: str,
    limit: int | None,
    min_score: float | None,
    folder: str | None,
    cutoff: str | None,
    fmt: str | None,
    library: str | None,
) -> None:
    """Find images that look like FILE (FILE itself is left out; it need not be indexed).

    \b
    Example:
      imgsearch similar ~/Pictures/beach.jpg -k 5
    """
    from imgsearch.query import Filter, Query

    settings = settings_from(ctx, library=library, cutoff=cutoff)
    filters = (Filter("in", (folder,)),) if folder is not None else ()
    q = Query(k=limit, min_score=min_score, filters=filters, cutoff=settings.cutoff)
    with _searcher(settings) as searcher:
        result = searcher.similar_to(file, q)
        _print_result(result, fmt, searcher.settings, min_score, q)


# ---- housekeeping -----------------------------------------------------------------------------
def _open_existing(ctx: click.Context, library: str | None) -> Any:
    from imgsearch.library import Library

    return Library.open(settings_from(ctx, library=library).library_path)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@library_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """Show what the library holds: images, model, precisions, size on disk, last run.

    \b
    Example:
      imgsearch stats --json
    """
    import json

    from imgsearch.library import ERROR

    settings = settings_from(ctx, library=library)
    own, model_files = _sizes(settings.library_path)
    with _open_existing(ctx, library) as lib:
        spec = lib.model_spec()
        meta = lib.meta()
        last = lib.last_run()
        count = lib.count()
        info = {
            "library": str(lib.path),
            "images": count,
            "errors": lib.count(ERROR),
            "model": spec.name if spec else None,
            "pretrained": spec.pretrained if spec else None,
            "dim": spec.dim if spec else None,
            "index": "exact" if count <= settings.exact_search_max else "approximate (IVF)",
            "bytes": own + model_files,
            "library_bytes": own,
            "model_bytes": model_files,
            "embedded_at": lib.embedded_at(),
            "created_at": meta.get("created_at"),
            "updated_at": meta.get("updated_at"),
            "last_run": last,
        }
    if as_json:
        echo(json.dumps(info, indent=2, default=str))
        return
    lines = [
        f"library   {info['library']}",
        f"model     {spec.label() + f' ({spec.dim}-d)' if spec else '(none yet)'}",
        f"images    {info['images']} indexed, {info['errors']} failed",
        f"index     {info['index']}",
        *([f"embedded  at {', '.join(info['embedded_at'])}"] if info["embedded_at"] else []),
        f"size      {human_bytes(own)}"
        + (f", plus {human_bytes(model_files)} of model files" if model_files else ""),
    ]
    if last:
        counts = ", ".join(
            f"{last[k]} {k}"
            for k in ("added", "updated", "moved", "removed", "skipped", "unchanged")
        )
        lines.append(
            f"last run  {last['finished_at'] or last['started_at']} ({last['status']}): {counts}"
        )
    echo("\n".join(lines))


def _sizes(folder: Any) -> tuple[int, int]:
    """(the library's own bytes, the model files' bytes): the text encoder in text-encoder/ is
    the same for every library of a model (hard links to one cached copy) and often 100x the
    rest."""
    from imgsearch.library import TEXT_ENCODER_DIR

    own = models = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            if path.relative_to(folder).parts[0] == TEXT_ENCODER_DIR:
                models += size
            else:
                own += size
    return own, models


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def errors(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the files that could not be indexed, and why.

    \b
    Example:
      imgsearch errors --json
    """
    from imgsearch.paths import json_fields

    with _open_existing(ctx, library) as lib:
        rows = [{**json_fields(p), "reason": r} for p, r in lib.errors()]
    echo(render_rows(rows, "json" if as_json else "table", ["path", "reason"]))


@cli.command()
@click.option(
    "--kind",
    type=click.Choice(["exact", "near", "similar"]),
    default="near",
    show_default=True,
    help="exact: byte-identical; near: resized/re-encoded/cropped/rotated copies; similar: "
    "burst shots (same camera within seconds).",
)
@click.option(
    "--in", "folder", type=click.Path(exists=True, file_okay=False), help="Only this folder."
)
@output_options
@library_option
@click.pass_context
def duplicates(
    ctx: click.Context, kind: str, folder: str | None, fmt: str | None, library: str | None
) -> None:
    """Find duplicate photos: groups with a suggested keeper and the evidence. Deletes nothing.

    --json prints the groups; --paths and --null print the photos that are not keepers.

    \b
    Example:
      imgsearch duplicates
      imgsearch duplicates --kind exact --json
      imgsearch duplicates --in ~/Pictures/2023 --paths   # the copies, for review
    """
    import json

    from imgsearch import duplicates as dup
    from imgsearch.library import Library
    from imgsearch.paths import canonical, json_fields
    from imgsearch.vectors import IndexParams

    settings = settings_from(ctx, library=library)
    with Library.open(settings.library_path) as lib:
        groups = dup.library_groups(
            lib, kind, canonical(folder) if folder else None, IndexParams.from_settings(settings)
        )
    if fmt == "json":
        out = []
        for g in groups:
            data = g.to_dict()
            for m in data["members"]:
                m.update(json_fields(m["path"]))
            out.append(data)
        echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if fmt in ("paths", "null"):
        echo(render_paths([m.path for g in groups for m in g.members if m.id != g.keeper], fmt))
        return
    blocks = []
    for n, g in enumerate(groups, 1):
        lines = [f"group {n} ({g.kind}, {len(g.members)} photos)"]
        for m in g.members:
            evidence = [f"cosine {m.cosine:.3f}" if m.cosine is not None else ""]
            if m.hash_distance is not None:
                evidence.append(f"hash {m.hash_distance}")
            if m.seconds_apart is not None:
                evidence.append(f"{m.seconds_apart:g} s apart")
            mark = "keep" if m.id == g.keeper else "    "
            lines.append(f"  {mark}  {display(m.path)}  ({', '.join(e for e in evidence if e)})")
        blocks.append("\n".join(lines))
    echo("\n\n".join(blocks))
    photos = sum(len(g.members) for g in groups)
    warn(f"{len(groups)} groups, {photos} photos ({kind}); nothing was deleted")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@library_option
@click.pass_context
def facets(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List cameras, years, months, folders and file types with image counts.

    Each value is what the matching filter takes: camera:, year:, after:, in:, ext:.

    \b
    Example:
      imgsearch facets --json
    """
    import json

    from imgsearch.filters import facets as read_facets

    with _open_existing(ctx, library) as lib:
        found = read_facets(lib)
    if as_json:
        data = {
            k: [{"value": display(v), "images": n} for v, n in rows] for k, rows in found.items()
        }
        echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    blocks = []
    for name, rows in found.items():
        lines = [f"{name.replace('_', ' ')}:"] + [f"  {n:>6}  {display(v)}" for v, n in rows]
        blocks.append("\n".join(lines if rows else [*lines, "  (none)"]))
    echo("\n\n".join(blocks))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@library_option
@click.pass_context
def folders(ctx: click.Context, as_json: bool, library: str | None) -> None:
    """List the folders the library covers: images, last indexed, and whether each is there.

    \b
    Example:
      imgsearch folders
    """
    from imgsearch.folders import absence
    from imgsearch.paths import json_fields

    with _open_existing(ctx, library) as lib:
        counts = lib.counts_by_root()
        rows = []
        for root in lib.roots():
            images, failed = counts.get(root.id, (0, 0))
            state = "excluded" if root.kind == "excluded" else (absence(root) or "ok")
            rows.append(
                {
                    **json_fields(root.path),
                    "kind": root.kind,
                    "images": images,
                    "failed": failed,
                    "indexed_at": root.indexed_at,
                    "status": state,
                }
            )
        loose = counts.get(None, (0, 0))
    if as_json:
        echo(render_rows(rows, "json", []))
        return
    table = [
        {
            "folder": r["path"],
            "images": r["images"] if r["kind"] == "root" else "-",
            "failed": r["failed"] if r["kind"] == "root" else "-",
            "last indexed": r["indexed_at"] or "never",
            "status": "ok" if r["status"] == "ok" else r["status"],
        }
        for r in rows
    ]
    echo(render_rows(table, "table", ["folder", "images", "failed", "last indexed", "status"]))
    if not rows:
        warn("no folders yet: imgsearch index PATH")
    if sum(loose):
        warn(f"({loose[0]} images were indexed as single files, outside these folders)")


@cli.command()
@click.argument("path", type=click.Path())
@library_option
@click.pass_context
def forget(ctx: click.Context, path: str, library: str | None) -> None:
    """Remove a folder from the library: a root, or a folder inside one, with its images.

    Files on disk are never touched. A forgotten folder inside a root stays out of later
    `index` runs until you index it again by name.

    \b
    Example:
      imgsearch forget /media/old-drive/photos
      imgsearch forget ~/Pictures/screenshots
    """
    from imgsearch.library import Library
    from imgsearch.paths import canonical, is_inside
    from imgsearch.vectors import IndexParams

    settings = settings_from(ctx, library=library)
    with Library.open(settings.library_path) as lib, lib.write_lock():
        roots = lib.roots()
        spelled = {canonical(path), os.path.abspath(os.path.expanduser(path))}
        named = [r for r in roots if r.path in spelled]  # a root may be gone: no realpath then
        target = named[0].path if named else canonical(path)
        is_root = any(r.kind == "root" for r in named)
        if not is_root and not any(r.kind == "root" and is_inside(target, r.path) for r in roots):
            raise ImgsearchError(
                f"{display(target)} is not one of the library's folders (see: imgsearch folders)"
            )
        inside = [r.id for r in roots if is_inside(r.path, target)]  # nested roots go too
        gone = lib.forget(target, inside)
        if not is_root:
            lib.add_root(target, None, kind="excluded")
        lib.ann.save(IndexParams.from_settings(settings))
    what = "folder" if is_root else "folder (left out of its root from now on)"
    warn(f"forgot {what} {display(target)}: {gone} images removed from the library")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cli(prog_name="imgsearch")
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
        command = _RAN.get("command")
        finished = command in READ_ONLY and isinstance(code, int)
        succeeded = command in LEAVE_AFTER_SUCCESS and code == 0
        if code != 130 and not (finished or succeeded):
            raise
        if succeeded:
            atexit._run_exitfuncs()  # its callbacks (logging, multiprocessing's finalisers) run
        # Interrupted, and everything stored is committed and unlocked by now: leave without
        # the interpreter's shutdown, since on a Ctrl-C that landed in some library's clean-up
        # it could still end the process by SIGINT (-2) instead of the status 130 shells
        # expect. Or a read-only command is done (READ_ONLY), or an index run (above).
        _leave(int(code))


def _leave(code: int) -> None:
    """Flush what was printed and end the process now, with `code` (a reader that closed the
    pipe early, `| head -1`, wanted no more: not an error)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # `python -m imgsearch.cli`: run the imported module, whose last lines register the
    # commands kept in other modules (this __main__ copy would lack them).
    from imgsearch.cli import main as _main

    _main()


from imgsearch import cli_clip, cli_completion, cli_serve  # noqa: E402,F401  (they register commands)
