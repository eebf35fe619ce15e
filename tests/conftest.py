"""Shared fixtures: a temp library per test, tiny models per session, generated pictures."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from imgsearch.cli import cli
from tests.support.harness import isolated_settings
from tests.support.photos import SHARED_PHOTOS


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache for the session: text-encoder exports are made once per model."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, session_cache: Path) -> Iterator[Path]:
    """Each test gets its own library, config and data dirs; the user's are never touched."""
    library = tmp_path / "library"
    with isolated_settings(tmp_path, session_cache, library):
        yield library


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`local-dir:` spec of a fixed random tiny CLIP (plumbing only: rankings are arbitrary)."""
    from tests.support.models import make_random_model_dir

    return "local-dir:" + str(make_random_model_dir(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`local-dir:` spec of a tiny CLIP trained on coloured shapes by the test suite itself."""
    from tests.support.tinyclip import train_tiny_clip

    return "local-dir:" + str(train_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="session")
def bilingual_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`local-dir:` spec of the English + Korean tiny CLIP (HF text tower), trained likewise."""
    from tests.support.bilingual import train_bilingual_clip

    return "local-dir:" + str(train_bilingual_clip(tmp_path_factory.mktemp("bilingual-clip")))


@pytest.fixture
def photos() -> Path:
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(f"real photos not found at {SHARED_PHOTOS} (../shared/photos beside the repo)")
    return SHARED_PHOTOS


def make_pictures(folder: Path, n: int, *, seed: int = 0, size: int = 48) -> list[Path]:
    """n distinct random pictures (blocks of colour), as PNG files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(6):
            x, y = rng.randrange(size), rng.randrange(size)
            w, h = rng.randrange(4, size), rng.randrange(4, size)
            img.paste(
                tuple(rng.randrange(256) for _ in range(3)),
                (x, y, min(size, x + w), min(size, y + h)),
            )
        path = folder / f"pic_{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def pictures(tmp_path: Path) -> list[Path]:
    return make_pictures(tmp_path / "photos", 12)


CliRun = Callable[..., Result]


@pytest.fixture
def run() -> Iterator[CliRun]:
    """Invoke the CLI in-process; assert the exit code (0 unless told) and no traceback."""
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=True)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    yield invoke


def hits(result: Result) -> list[dict]:
    """Parse `--json` output."""
    return json.loads(result.stdout)
