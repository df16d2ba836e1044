"""Content-addressed artifact cache: a stage's outputs stored under the digest of its inputs.

A cache entry is a directory ``<root>/<stage>/<key>/`` holding the files and a
``manifest.json`` with each file's sha256. An entry is written into a temporary
directory and renamed into place, so a crash never leaves a half-written entry, and it
is used only when every file still matches its recorded digest. A whole entry is never
replaced, and a damaged one is renamed aside before its replacement goes in, so a process
reading an entry never has it removed under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any, *, strict: bool = False) -> bytes:
    """The one canonical JSON of EdgeGate: sorted keys, no whitespace, UTF-8.

    Digests (cache keys, config digests) and signed payloads are computed over these bytes.
    ``strict`` (signed statements): no NaN/Infinity and no silent ``str()`` of unknown types.
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=not strict, default=None if strict else str,
    )
    return text.encode("utf-8")


def digest_json(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `path` through a temporary file in its directory and a rename, so a reader
    (or a crash) never sees it half-written; the parent directory is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    files: dict[str, str]  # relative name -> sha256
    meta: dict[str, Any]
    hit: bool

    def file(self, name: str) -> Path:
        return self.path / name


class ArtifactCache:
    """``refresh`` (``--no-cache``): every stage is built again and its entry replaces the
    stored one; nothing stored is read."""

    def __init__(self, root: Path, *, refresh: bool = False) -> None:
        self.root = root
        self.refresh = refresh

    def lookup(self, stage: str, key: str) -> CacheEntry | None:
        """The whole entry stored under `key`, or None. Another process may swap a damaged
        entry for a new one while this reads it (``_publish``): a file vanishing under the
        read is that swap, so read once more, after it."""
        for attempt in range(2):
            try:
                return self._read_entry(stage, key)
            except FileNotFoundError:
                if attempt:
                    return None
                time.sleep(0.05)
        return None

    def _read_entry(self, stage: str, key: str) -> CacheEntry | None:
        path = self.root / stage / key
        manifest = path / "manifest.json"
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
            files = dict(data["files"])
        except (ValueError, KeyError, TypeError):
            return None
        for name, digest in files.items():
            f = path / name
            if not f.is_file() or sha256_file(f) != digest:
                return None
        return CacheEntry(key, path, files, dict(data.get("meta", {})), True)

    def find(self, stage: str, key_parts: Mapping[str, Any]) -> CacheEntry | None:
        """The entry stored for `key_parts`, or None (always None when refreshing)."""
        return None if self.refresh else self.lookup(stage, digest_json({"stage": stage, **key_parts}))

    def get_or_build(
        self,
        stage: str,
        key_parts: Mapping[str, Any],
        build: Callable[[Path], dict[str, Any]],
    ) -> CacheEntry:
        """Return the cached entry for `key_parts`, or run `build(tmp_dir)` and store it.

        `build` writes its files into the directory it is given and returns metadata
        (JSON-serialisable) kept in the manifest.
        """
        key = digest_json({"stage": stage, **key_parts})
        found = None if self.refresh else self.lookup(stage, key)
        if found is not None:
            return found
        stage_dir = self.root / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=stage_dir))
        try:
            meta = build(tmp)
            files = {
                str(p.relative_to(tmp)): sha256_file(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            (tmp / "manifest.json").write_text(
                json.dumps({"key_parts": key_parts, "files": files, "meta": meta}, indent=1, sort_keys=True, default=str)
            )
            final = stage_dir / key
            theirs = self._publish(stage, key, tmp, final)
            if theirs is not None:
                return theirs
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return CacheEntry(key, final, files, meta, False)

    def _publish(self, stage: str, key: str, tmp: Path, final: Path) -> CacheEntry | None:
        """Rename the built `tmp` into place as `final`; returns the entry to use instead
        when another process stored a whole one first (ours is dropped). A damaged entry is
        renamed aside, never removed in place, so a reader's open files stay whole; the
        aside copy is removed after the new entry is in place. Refreshing, ours always
        replaces theirs."""
        for _ in range(3):
            theirs = None if self.refresh else self.lookup(stage, key)
            if theirs is not None:  # built concurrently by another process: it is as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
                return theirs
            aside = None
            if final.exists():  # stale or damaged: move it out of the way in one rename
                aside = final.with_name(f".{key[:12]}-stale-{os.getpid()}-{time.monotonic_ns()}")
                try:
                    os.replace(final, aside)
                except FileNotFoundError:
                    aside = None  # someone else moved it first
            try:
                os.replace(tmp, final)
            except OSError:
                continue  # another process put an entry there in between: look at it
            finally:
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
            return None
        raise OSError(f"cache entry {final} kept changing while being replaced")
