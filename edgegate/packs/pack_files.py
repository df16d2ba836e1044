"""Write a new pack's files: its samples' files (copied or hard-linked), one JSONL file per
split and ``manifest.yaml``, each in a fixed order so the same pack is the same bytes.

``--link`` makes hard links, not symlinks: a pack holds its own files, and the loader
refuses a symlink leading outside a pack (a downloaded pack must not read the host's
files), so a symlinked pack would not load. A hard link shares the bytes without a copy
and keeps the pack whole when it is moved or archived; it needs the pack on the source's
filesystem, and says so when it is not."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from edgegate.artifacts import sha256_file
from edgegate.errors import InputError
from edgegate.packs.manifest import Task
from edgegate.packs.sources import SourceItem

_CHUNK = 1 << 20


def record_of(task: Task, item: SourceItem) -> dict[str, Any]:
    """The JSONL record of one sample (the schemas of :mod:`edgegate.packs.records`)."""
    if task is Task.IMAGE_CLASSIFICATION:
        return {"id": item.id, "image": item.pack_path, "label": item.label}
    if task is Task.OBJECT_DETECTION:
        return {"id": item.id, "image": item.pack_path, "boxes": [list(b) for b in item.boxes],
                "labels": list(item.labels)}
    if task is Task.TEXT_CLASSIFICATION:
        return {"id": item.id, "text": item.text, "label": item.label}
    raise ValueError(f"pack create does not write {task.value} packs")


def _copy_checked(src: Path, dst: Path, item: SourceItem) -> None:
    """Copy the sample's file, hashing the bytes written: the manifest's sha256 is then
    the hash of the pack's bytes even if the source changed since it was read."""
    digest = hashlib.sha256()
    with open(src, "rb") as f, open(dst, "wb") as out:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != item.sha256:
        raise InputError(f"{item.shown}: changed while the pack was being built; run pack create again")


def _link_checked(src: Path, dst: Path, item: SourceItem) -> None:
    """Hard-link the sample's file into the pack, then hash it: the manifest's sha256 is
    then the hash of the pack's bytes even if the source changed since it was read."""
    try:
        os.link(src, dst)  # follows a symlinked source to its file
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
            raise
        raise InputError(
            f"--link: cannot hard-link {item.shown} into the pack ({exc.strerror}); write the pack "
            "on the source's filesystem, or drop --link to copy the files"
        ) from None
    if sha256_file(dst) != item.sha256:
        raise InputError(f"{item.shown}: changed while the pack was being built; run pack create again")


def write_pack_files(
    root: Path, task: Task, splits: dict[str, list[SourceItem]], *, link: bool
) -> dict[str, str]:
    """Write every split's samples and JSONL file under ``root``; their sha256 by path."""
    files: dict[str, str] = {}
    for split, items in splits.items():
        lines = []
        for item in items:
            if item.file is not None and item.pack_path is not None:
                dst = root / item.pack_path
                dst.parent.mkdir(parents=True, exist_ok=True)
                if link:
                    _link_checked(item.file, dst, item)
                else:
                    _copy_checked(item.file, dst, item)
                files[item.pack_path] = item.sha256
            lines.append(json.dumps(record_of(task, item), ensure_ascii=False) + "\n")
        data = "".join(lines).encode("utf-8")
        name = f"{split}.jsonl"
        (root / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    return dict(sorted(files.items()))


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, keys in the order given (the order people read them in)."""
    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
