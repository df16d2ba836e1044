"""Load and verify a PromptPack: a versioned evaluation set with a hashed manifest.

A pack is a directory holding ``manifest.yaml``, one JSONL file of samples per
split and the files those samples name. The manifest lists the sha256 of every
other file in the pack, so the manifest's own hash (``PromptPack.digest``) pins
the whole pack: two runs with the same digest scored the same bytes. A pack holds its
own files: one (or a directory on its way) that is a symlink leading outside the pack is
refused before anything is read, and every file is read within the bounds of
:mod:`edgegate.safe_load`.

The manifest's schema is in :mod:`edgegate.packs.manifest`, the record of a JSONL line
for each task (and the Sample it becomes) in :mod:`edgegate.packs.records`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgegate.artifacts import sha256_file
from edgegate.config import YamlDocument, render_field_path
from edgegate.errors import PackIntegrityError, SpecError, UnknownNameError
from edgegate.packs.manifest import (
    MANIFEST_NAME,
    PACK_WORDING,
    Modality,
    PackManifest,
    Task,
    link_escape,
    read_manifest,
)
from edgegate.packs.records import RECORDS, RecordContext, RecordError
from edgegate.packs.sample import Sample
from edgegate.safe_load import SAMPLES_LIMITS, decode_lines, loads_json, read_bounded

__all__ = [
    "MANIFEST_NAME", "Modality", "PackManifest", "PromptPack", "Task", "file_problems",
    "load_promptpack", "sha256_file",
]

logger = logging.getLogger(__name__)


class PromptPack:
    """A loaded pack. Build it with :func:`load_promptpack`."""

    def __init__(
        self,
        root: Path,
        manifest_path: Path,
        manifest: PackManifest,
        digest: str,
        samples_by_split: dict[str, list[Sample]],
    ) -> None:
        self.root = root
        self.manifest_path = manifest_path
        self.manifest = manifest
        self.digest = digest
        self._samples = samples_by_split

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def modality(self) -> Modality:
        return self.manifest.modality

    @property
    def task(self) -> Task:
        return self.manifest.task

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def _split(self, split: str) -> list[Sample]:
        if split not in self._samples:
            raise UnknownNameError(
                f"pack '{self.name}' has no split '{split}'; splits: {', '.join(self.splits)}"
            )
        return self._samples[split]

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """The split's samples in file order; ``limit`` keeps the first ``limit``."""
        samples = self._split(split)
        if limit is None:
            return list(samples)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return samples[:limit]

    def split_digest(self, split: str) -> str:
        """sha256 over the split's samples file hash, then each sample's id and image hash."""
        samples = self._split(split)
        samples_file = self.manifest.splits[split].samples
        digest = hashlib.sha256()
        digest.update(f"{samples_file}\t{self.manifest.files[samples_file]}\n".encode())
        for sample in samples:
            digest.update(f"{sample.id}\t{sample.sha256}\n".encode())
        return f"sha256:{digest.hexdigest()}"

    def __repr__(self) -> str:
        return f"PromptPack({self.name!r}, version={self.version!r}, digest={self.digest[:19]}...)"


def file_problems(file: str, root: Path, manifest: PackManifest) -> dict[str, str]:
    """The problem line of each file the manifest lists that is missing or whose sha256
    differs, by its path in the pack (``file`` names the manifest in the lines); empty
    when every file matches."""
    problems: dict[str, str] = {}
    for rel, expected in manifest.files.items():
        path = root / rel
        if not path.is_file():
            problems[rel] = (
                f"{file}: files.{rel}: listed in the manifest but missing; "
                "rebuild the pack or restore the file"
            )
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems[rel] = (
                f"{file}: files.{rel}: sha256 mismatch (manifest {expected[:6]}..., "
                f"file {actual[:6]}...); rebuild the pack or restore the file"
            )
    return problems


def _load_split(
    manifest_path: Path, root: Path, manifest: PackManifest, split: str, doc: YamlDocument
) -> list[Sample]:
    spec = manifest.splits[split]
    samples_path = root / spec.samples
    shown = str(manifest_path.parent / spec.samples)  # the path as the user gave it, for messages
    record_model = RECORDS[manifest.task]
    context = RecordContext(root, manifest, split, shown)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    lines = decode_lines(read_bounded(samples_path, shown, SAMPLES_LIMITS), shown, SAMPLES_LIMITS)
    for lineno, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        data = loads_json(text, shown, SAMPLES_LIMITS, line=lineno)
        try:
            record: Any = record_model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            problem = PACK_WORDING.problem(err, list(loc), record_model)
            raise SpecError(shown, render_field_path(loc), problem, lineno) from exc
        if record.id in seen:
            raise SpecError(
                shown, "id", f"duplicate id '{record.id}' (first on line {seen[record.id]})", lineno
            )
        seen[record.id] = lineno
        try:
            samples.append(context.sample(record, lineno))
        except RecordError as exc:
            raise SpecError(shown, exc.field, exc.problem, lineno) from None
    if len(samples) != spec.count:
        raise SpecError(
            doc.file,
            f"splits.{split}.count",
            f"says {spec.count} samples but '{spec.samples}' has {len(samples)}",
            doc.line_of("splits", split, "count"),
        )
    return samples


def load_promptpack(path: str | Path, *, verify: bool = True) -> PromptPack:
    """Load the pack at ``path`` (its directory or its manifest.yaml).

    With ``verify`` every file listed in the manifest is hashed and compared;
    without it only the manifest and the samples files are read.
    """
    path = Path(path)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
    elif path.name == MANIFEST_NAME or path.suffix in {".yaml", ".yml"}:
        manifest_path = path
    else:
        raise SpecError(str(path), None, f"not a pack directory or its {MANIFEST_NAME}")
    if not manifest_path.is_file():
        problem = "manifest not found; is this a PromptPack directory?"
        raise SpecError(str(manifest_path), None, problem)
    file = str(manifest_path)
    root = manifest_path.parent.resolve()
    escape = link_escape(root, manifest_path.name)
    if escape is not None:
        raise SpecError(file, None, escape)

    manifest, raw, doc = read_manifest(manifest_path)
    # Before any listed file is read: a pack's files are its own, never the host's.
    checked: set[str] = set()
    for rel in manifest.files:
        escape = link_escape(root, rel, checked)
        if escape is not None:
            raise SpecError(file, f"files.{rel}", escape, doc.line_of("files", rel))
    for split, spec in manifest.splits.items():
        if not (root / spec.samples).is_file():
            line = doc.line_of("splits", split, "samples")
            problem = f"file '{spec.samples}' not found"
            raise SpecError(file, f"splits.{split}.samples", problem, line)
    if verify:
        problems = file_problems(file, root, manifest)
        if problems:
            raise PackIntegrityError(next(iter(problems.values())))
    samples = {
        split: _load_split(manifest_path, root, manifest, split, doc) for split in manifest.splits
    }
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    logger.debug("loaded pack %s %s (%s)", manifest.name, manifest.version, digest)
    return PromptPack(root, manifest_path, manifest, digest, samples)
