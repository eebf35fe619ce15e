"""Roots -> FileEntry: find image files fast (one stat per image), safely and in a stable order."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from imgsearch.errors import ImgsearchError
from imgsearch.filetype import (  # noqa: F401  (re-exported: the walk's public names)
    FINGERPRINT_CHUNK,
    RAW_EXTENSIONS,
    SNIFF_BYTES,
    describe_file_type,
    fingerprint,
    fingerprint_fd,
    sniff_format,
    sniff_unsupported,
)
from imgsearch.paths import canonical, display

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    | {".heic", ".heif", ".avif"}
    | RAW_EXTENSIONS
)

# Folders that NAS boxes, Windows, Linux and macOS fill with thumbnails or deleted files.
SYSTEM_FOLDERS: frozenset[str] = frozenset(
    name.casefold()
    for name in (
        "@eaDir",
        "@Recycle",
        "@Recently-Snapshot",
        "#recycle",
        "#snapshot",
        "$RECYCLE.BIN",
        "System Volume Information",
        "lost+found",
    )
)


@dataclass(frozen=True)
class FileEntry:
    """An image file as the walk saw it; `path` is canonical (symlinks resolved), so a file has
    one path however it was reached."""

    path: str
    size: int
    mtime_ns: int
    root: str = ""  # the scanned root (canonical) it was found under


@dataclass(frozen=True)
class WalkSkip:
    """Something the walk could not look into, with a reason a user can act on."""

    path: str
    reason: str


def is_system_name(name: str) -> bool:
    """True for hidden names and system/trash folders that hold no user photos."""
    return name.startswith(".") or name.casefold() in SYSTEM_FOLDERS


def _sniff_path(path: str) -> str | None:
    """Read at most SNIFF_BYTES without blocking (the caller checked it is a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return sniff_format(os.read(fd, SNIFF_BYTES))
    except OSError:
        return None
    finally:
        os.close(fd)


def _wanted_by_name(name: str) -> bool | None:
    """True: image extension; False: other extension (never opened); None: no extension, sniff."""
    ext = os.path.splitext(name)[1]
    if ext in ("", "."):  # "photo.jpg." and "IMG_0001" say nothing: the content decides
        return None
    return ext.lower() in IMAGE_EXTENSIONS


def _os_reason(exc: OSError, what: str) -> str:
    """A short reason for a failed stat/scandir: specific for the usual errno values."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == 40:  # ELOOP
        return "symbolic link loop"
    if isinstance(exc, FileNotFoundError):
        return f"{what} disappeared during the scan"
    return f"cannot read {what}: {exc.strerror or exc}"


def _link_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "broken symbolic link (its target does not exist)"
    return _os_reason(exc, "symbolic link target")


def _check_roots(roots: Iterable[str | os.PathLike[str]]) -> list[tuple[str, os.stat_result]]:
    """Stat every root before anything is yielded, so a typo fails fast and names the root."""
    checked = []
    for root in roots:
        path = canonical(root)
        try:
            checked.append((path, os.stat(path)))
        except FileNotFoundError:
            raise ImgsearchError(f"{display(os.fspath(root))}: no such file or folder") from None
        except OSError as exc:
            raise ImgsearchError(f"{display(os.fspath(root))}: {_os_reason(exc, 'root')}") from exc
    return checked


def scan(
    roots: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    skip_hidden: bool = True,
    follow_symlinks: bool = True,
    on_skip: Callable[[WalkSkip], None] | None = None,
    exclude: Collection[str] = (),
) -> Iterator[FileEntry]:
    """Yield each image file under `roots` once, in sorted order; roots are checked right away.

    Symlinks given as roots are always followed; below them `follow_symlinks` decides. Every
    path yielded is canonical. Folders in `exclude` (canonical: the library itself, folders
    the user forgot) are not entered. Problems below a root go to `on_skip`; the walk goes on.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    checked = _check_roots(roots)
    walker = _Walker(skip_hidden, follow_symlinks, on_skip or (lambda skip: None), set(exclude))
    return walker.run(checked)


class _Walker:
    """One scan's state: directories and files already seen, keyed by (st_dev, st_ino)."""

    def __init__(
        self,
        skip_hidden: bool,
        follow_symlinks: bool,
        on_skip: Callable[[WalkSkip], None],
        exclude: set[str],
    ) -> None:
        self.skip_hidden = skip_hidden
        self.follow_symlinks = follow_symlinks
        self.on_skip = on_skip
        self.exclude = exclude
        self.root = ""
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[tuple[int, int]] = set()

    def run(self, roots: list[tuple[str, os.stat_result]]) -> Iterator[FileEntry]:
        for path, st in roots:
            self.root = path
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in self.seen_dirs and path not in self.exclude:
                    yield from self._walk_tree(path, st)  # not seen: e.g. a root inside another
            elif not stat.S_ISREG(st.st_mode):
                self._skip(path, f"not a regular file ({describe_file_type(st.st_mode)})")
            elif _wanted_by_name(os.path.basename(path)) is False:
                self._skip(path, "not an image file (unsupported extension)")
            else:
                entry = self._file(path, os.path.basename(path), st)
                if entry is not None:
                    yield entry

    def _walk_tree(self, root: str, st: os.stat_result) -> Iterator[FileEntry]:
        """Depth-first over sorted names with an explicit stack (no recursion limit).

        A frame is `real` while no symlink led to it: its entries' paths are canonical as they
        are; below a symlink each path is resolved."""
        self.seen_dirs.add((st.st_dev, st.st_ino))
        stack = [(root, (st.st_dev, st.st_ino), self._list(root), True)]
        on_stack = {(st.st_dev, st.st_ino)}
        while stack:
            real = stack[-1][3]
            entry = next(stack[-1][2], None)
            if entry is None:
                on_stack.discard(stack.pop()[1])
                continue
            if self.skip_hidden and is_system_name(entry.name):
                continue
            is_link = entry.is_symlink()
            if is_link and not self.follow_symlinks:
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                child_real = real and not is_link
                if (entry.path if child_real else canonical(entry.path)) in self.exclude:
                    continue
                key = self._enter_dir(entry, is_link, on_stack)
                if key is not None:
                    stack.append((entry.path, key, self._list(entry.path), child_real))
                    on_stack.add(key)
                continue
            found = self._file_entry(entry, is_link, real and not is_link)
            if found is not None:
                yield found

    def _skip(self, path: str, reason: str) -> None:
        self.on_skip(WalkSkip(path, reason))

    @staticmethod
    def _special_reason(entry: os.DirEntry[str]) -> str:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            return "not a regular file"
        return f"not a regular file ({describe_file_type(mode)})"

    def _list(self, path: str) -> Iterator[os.DirEntry[str]]:
        """Sorted directory entries; an unreadable folder is reported and treated as empty."""
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.on_skip(WalkSkip(path, _os_reason(exc, "folder")))
            return iter(())
        return iter(entries)

    def _enter_dir(
        self, entry: os.DirEntry[str], is_link: bool, on_stack: set[tuple[int, int]]
    ) -> tuple[int, int] | None:
        """The folder's (dev, ino) if it is new; loops are reported, repeats skipped quietly."""
        try:
            st = entry.stat()
        except OSError as exc:
            self.on_skip(
                WalkSkip(entry.path, _link_reason(exc) if is_link else _os_reason(exc, "folder"))
            )
            return None
        key = (st.st_dev, st.st_ino)
        if key in on_stack:
            self.on_skip(
                WalkSkip(entry.path, "symbolic link loop (points to a folder containing it)")
            )
            return None
        if key in self.seen_dirs:
            return None
        self.seen_dirs.add(key)
        return key

    def _file_entry(self, entry: os.DirEntry[str], is_link: bool, real: bool) -> FileEntry | None:
        """Stat only names that may be images; specials (FIFO, socket, device) are never opened."""
        wanted = _wanted_by_name(entry.name)
        if wanted is False:
            return None
        if not is_link:
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            if not regular:
                if wanted:  # d_type says FIFO/socket/device: lstat names it, nothing is opened
                    self._skip(entry.path, self._special_reason(entry))
                return None
        try:
            st = entry.stat()
        except OSError as exc:
            self.on_skip(
                WalkSkip(entry.path, _link_reason(exc) if is_link else _os_reason(exc, "file"))
            )
            return None
        if not stat.S_ISREG(st.st_mode):
            if wanted:
                self.on_skip(
                    WalkSkip(entry.path, f"not a regular file ({describe_file_type(st.st_mode)})")
                )
            return None
        return self._file(entry.path if real else canonical(entry.path), entry.name, st)

    def _file(self, path: str, name: str, st: os.stat_result) -> FileEntry | None:
        """A FileEntry for a regular image file not seen yet (hard link/symlink: first wins)."""
        if not stat.S_ISREG(st.st_mode):
            return None
        wanted = _wanted_by_name(name)
        if wanted is False or (wanted is None and _sniff_path(path) is None):
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return None
        self.seen_files.add(key)
        return FileEntry(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, root=self.root)
