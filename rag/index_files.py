"""The index folder on disk: the CURRENT pointer, the one-builder lock, atomic writes, checksums.

Everything here treats the folder's contents as untrusted: CURRENT may hold any bytes or be a
directory, a manifest may name `../../dev/zero`. Readers get an IndexInvalidError that names the
file and the fix; a build treats a damaged CURRENT as "no live version" and so repairs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rag.errors import IndexBusyError, IndexInvalidError
from rag.hashing import file_sha256

CURRENT = "CURRENT"
VERSION_NAME = re.compile(r"v[0-9]{8}T[0-9]{12}-[0-9]+")  # what builds name their versions
Stage = Callable[[str], None]


def current_version(index_dir: Path) -> Path | None:
    """The live version folder, or None when nothing has been built; IndexInvalidError when CURRENT is damaged."""
    pointer = index_dir / CURRENT
    fix = f"run `rag index --index {index_dir}` to repair it"
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, a permission problem
        raise IndexInvalidError(f"{pointer} is unreadable ({exc.strerror}); {fix}") from None
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise IndexInvalidError(f"{pointer} is damaged (not text); {fix}") from None
    if not name:
        return None
    if not VERSION_NAME.fullmatch(name):
        raise IndexInvalidError(f"{pointer} names {name[:80]!r}, which is not an index version; {fix}")
    return index_dir / name


def live_version_or_note(index_dir: Path) -> tuple[Path | None, str | None]:
    """For a build: the live version, or None and why a damaged pointer is being replaced."""
    try:
        return current_version(index_dir), None
    except IndexInvalidError as exc:
        return None, f"{str(exc).split('; ')[0]}; building a fresh version"


def version_file(version: Path, name: object) -> Path:
    """A file a manifest names, only if it is a regular file inside the version folder."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise IndexInvalidError(f"index at {version} names a file outside itself ({str(name)[:80]!r})")
    path = version / name
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise IndexInvalidError(f"index at {version} is damaged: {name} is unreadable ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise IndexInvalidError(f"index at {version} is damaged: {name} is not a regular file")
    return path


def check_files(path: Path, files: object, fix: str) -> None:
    """Every file must have the bytes the build wrote: a truncated or altered file is caught here,
    even where numpy or faiss would load it without complaint."""
    if not isinstance(files, dict) or not files:
        raise IndexInvalidError(f"index at {path} lists no file checksums; {fix}")
    for name, digest in files.items():
        try:
            actual = file_sha256(version_file(path, name))
        except IndexInvalidError as exc:
            raise IndexInvalidError(f"{exc}; {fix}") from None
        except OSError as exc:
            raise IndexInvalidError(f"index at {path} is damaged: {name} is unreadable ({exc.strerror}); {fix}") from exc
        if actual != digest:
            raise IndexInvalidError(f"index at {path} is damaged: {name} does not match its checksum; {fix}")


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file of a version (but the manifest, which holds them), by relative path."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p != root / "manifest.json")
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in files}


@contextlib.contextmanager
def writer_lock(index_dir: Path, wait: bool = True, on_wait: Stage | None = None) -> Iterator[None]:
    """One builder at a time. flock is released by the OS when the holder dies, so it never goes stale;
    the holder's pid is written into the file only to make the waiting message useful."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            if not wait:
                raise IndexBusyError(
                    f"another build (pid {holder}) is writing {index_dir}; run again when it finishes, or without --no-wait to wait for it"
                ) from None
            message = f"waiting for another build (pid {holder}) to finish writing {index_dir} ..."
            if on_wait is None:
                print(message, file=sys.stderr, flush=True)
            else:
                on_wait(message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def point_current(index_dir: Path, name: str) -> None:
    """Atomically make `name` the live version (replacing a damaged CURRENT, even a directory)."""
    tmp = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    pointer = index_dir / CURRENT
    if pointer.is_dir() and not pointer.is_symlink():
        shutil.rmtree(pointer)
    os.replace(tmp, pointer)
    fsync_dir(index_dir)


def remove_old_versions(index_dir: Path, keep: set[str]) -> None:
    """Keep the live version and the one it replaced (a reader may still be loading it); drop the
    rest, including leftovers of builds that were killed (temporary folders, never-switched versions)."""
    for path in index_dir.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and (path.name.startswith("v") or path.name.startswith(".tmp-")):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(f".{CURRENT}.tmp-"):
            path.unlink(missing_ok=True)


def fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
