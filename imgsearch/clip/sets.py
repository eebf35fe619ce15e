"""Label sets and template sets: data files (built in, or the user's), never Python tuples.

A built-in set is a TOML file in `labels/` or `templates/` next to this module. Its `source`
may name a constant of open_clip's `zero_shot_metadata.py` ("open_clip:IMAGENET_CLASSNAMES"):
that file is read and parsed here (ast, never imported: open_clip imports torch), so the
names are reused, not copied. A user's set is a TOML file of the same shape or a text file
with one label per line (`label | alias | alias`, `#` comments).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsearch.errors import ImgsearchError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
LABELS_DIR = HERE / "labels"
TEMPLATES_DIR = HERE / "templates"
OPEN_CLIP_PREFIX = "open_clip:"
DEFAULT_TEMPLATES = "photo"


class SetError(ImgsearchError):
    """A label or template set that cannot be found or read."""


@dataclass(frozen=True)
class Label:
    """One label: its name, other names averaged with it, or its own full prompts."""

    name: str
    aliases: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()  # when given, used instead of the template set
    group: str = ""

    def texts(self, templates: tuple[str, ...]) -> list[str]:
        """The prompts whose embeddings are averaged into this label's classifier row."""
        if self.prompts:
            return list(self.prompts)
        return [t.format(n) for n in (self.name, *self.aliases) for t in templates]


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[Label, ...]
    exclusive: bool = False  # one label per photo (ImageNet) vs several (everyday)
    templates: str = DEFAULT_TEMPLATES  # the template set used when none is asked for
    source: str = ""
    licence: str = ""
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def digest(self) -> str:
        """Identity of the content (cache key): changes when any label, alias or prompt does."""
        raw = [(lab.name, lab.aliases, lab.prompts) for lab in self.labels]
        return hashlib.sha256(json.dumps(raw).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TemplateSet:
    name: str
    templates: tuple[str, ...]
    source: str = ""
    licence: str = ""
    description: str = ""


def builtin_label_sets() -> list[str]:
    return sorted(p.stem for p in LABELS_DIR.glob("*.toml"))


def builtin_template_sets() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.toml"))


# ---- open_clip's zero_shot_metadata, read as source ---------------------------------------------
def _open_clip_metadata() -> Path:
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "zero_shot_metadata.py"
        if path.is_file():
            return path
    raise SetError(
        "this set reuses open_clip's zero_shot_metadata.py, but open_clip is not installed; "
        "pip install open_clip_torch, or use a label/template file of your own"
    )


def _fstring_template(node: ast.AST, where: str) -> str:
    """`lambda c: f'a photo of a {c}.'` -> "a photo of a {}."."""
    if not (isinstance(node, ast.Lambda) and isinstance(node.body, ast.JoinedStr)):
        raise SetError(f"{where}: expected lambda c: f'...{{c}}...', found {ast.dump(node)[:80]}")
    arg = node.args.args[0].arg
    out = []
    for part in node.body.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value).replace("{", "{{").replace("}", "}}"))
        elif isinstance(part, ast.FormattedValue) and getattr(part.value, "id", None) == arg:
            out.append("{}")
        else:
            raise SetError(f"{where}: unsupported template expression {ast.dump(part)[:80]}")
    return "".join(out)


def open_clip_constant(name: str) -> tuple[str, ...]:
    """A tuple of strings (class names) or templates (lambdas, as format strings) by name."""
    path = _open_clip_metadata()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and getattr(node.targets[0], "id", None) == name
        ):
            if not isinstance(node.value, (ast.Tuple, ast.List)):
                raise SetError(f"{path}: {name} is not a tuple")
            elts = node.value.elts
            if elts and isinstance(elts[0], ast.Lambda):
                return tuple(_fstring_template(e, f"{path}: {name}") for e in elts)
            return tuple(str(v) for v in ast.literal_eval(node.value))
    raise SetError(f"{path} has no constant {name}; this open_clip version is not supported")


# ---- reading set files --------------------------------------------------------------------------
def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SetError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SetError(f"{path} is not valid TOML: {exc}") from exc


def _label(entry: Any, group: str, where: Path) -> Label:
    if isinstance(entry, str) and entry.strip():
        return Label(entry.strip(), group=group)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
        unknown = set(entry) - {"name", "aliases", "prompts"}
        if unknown:
            raise SetError(f"{where}: label {entry['name']!r} has unknown keys {sorted(unknown)}")
        lists = {}
        for key in ("aliases", "prompts"):
            value = entry.get(key, [])
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise SetError(f"{where}: {key} of {entry['name']!r} must be a list of strings")
            lists[key] = tuple(v.strip() for v in value if v.strip())
        return Label(entry["name"].strip(), lists["aliases"], lists["prompts"], group)
    raise SetError(
        f'{where}: a label must be a string or {{ name = "...", aliases = [...] }}, not {entry!r}'
    )


def _label_set_from_toml(path: Path, name: str) -> LabelSet:
    data = _read_toml(path)
    known = {"name", "description", "source", "licence", "exclusive", "templates", "labels"}
    unknown = set(data) - known - {"groups"}
    if unknown:
        raise SetError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(known)}, groups)")
    labels: list[Label] = []
    source = str(data.get("source", ""))
    if source.startswith(OPEN_CLIP_PREFIX):
        labels += [Label(n) for n in open_clip_constant(source[len(OPEN_CLIP_PREFIX) :])]
    reused = len(labels)
    labels += [_label(e, "", path) for e in data.get("labels", [])]
    for group, entries in data.get("groups", {}).items():
        if not isinstance(entries, list):
            raise SetError(f"{path}: groups.{group} must be a list of labels")
        labels += [_label(e, group, path) for e in entries]
    templates = str(data.get("templates", DEFAULT_TEMPLATES))
    return _checked(
        LabelSet(
            name=str(data.get("name", name)),
            labels=tuple(labels),
            exclusive=bool(data.get("exclusive", False)),
            templates=templates,
            source=source or str(path),
            licence=str(data.get("licence", "")),
            description=str(data.get("description", "")),
        ),
        path,
        reused,
    )


def _label_set_from_text(path: Path) -> LabelSet:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SetError(f"cannot read label file {path}: {exc}") from exc
    labels = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, *aliases = (p.strip() for p in line.split("|"))
            labels.append(Label(name, tuple(a for a in aliases if a)))
    return _checked(LabelSet(name=path.stem, labels=tuple(labels), source=str(path)), path)


def _checked(label_set: LabelSet, path: Path, reused: int = 0) -> LabelSet:
    """Non-empty, and no name twice among the file's own labels (ImageNet's reused list has
    'missile' and 'sunglasses' twice each: distinct classes, kept as they are)."""
    if not label_set.labels:
        raise SetError(f"label set {path} holds no labels")
    seen: set[str] = set()
    for lab in label_set.labels[reused:]:
        if lab.name in seen:
            raise SetError(f"label set {path} names {lab.name!r} twice")
        seen.add(lab.name)
    return label_set


def load_label_set(spec: str) -> LabelSet:
    """A built-in set by name ("everyday", "imagenet") or a .toml / text file of labels."""
    path = Path(spec).expanduser()
    if spec in builtin_label_sets() and not path.exists():
        return _label_set_from_toml(LABELS_DIR / f"{spec}.toml", spec)
    if path.is_file():
        if path.suffix.lower() == ".toml":
            return _label_set_from_toml(path, path.stem)
        return _label_set_from_text(path)
    raise SetError(
        f"no label set {spec!r}: give a built-in set ({', '.join(builtin_label_sets())}) or a "
        f".toml / .txt file of labels"
    )


def load_template_set(spec: str) -> TemplateSet:
    """A built-in template set ("photo", "simple", "openai") or a .toml file with `templates`."""
    path = Path(spec).expanduser()
    if spec in builtin_template_sets() and not path.exists():
        path = TEMPLATES_DIR / f"{spec}.toml"
    elif not path.is_file():
        raise SetError(
            f"no template set {spec!r}: give a built-in set "
            f"({', '.join(builtin_template_sets())}) or a .toml file with templates = [...]"
        )
    data = _read_toml(path)
    source = str(data.get("source", ""))
    if source.startswith(OPEN_CLIP_PREFIX):
        templates = open_clip_constant(source[len(OPEN_CLIP_PREFIX) :])
    else:
        raw = data.get("templates")
        if not (isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw)):
            raise SetError(f"{path}: templates must be a non-empty list of strings")
        templates = tuple(raw)
    for t in templates:
        if t.count("{}") != 1:
            raise SetError(f"{path}: template {t!r} must hold exactly one {{}} for the label")
    return TemplateSet(
        name=str(data.get("name", path.stem)),
        templates=templates,
        source=source or str(path),
        licence=str(data.get("licence", "")),
        description=str(data.get("description", "")),
    )
