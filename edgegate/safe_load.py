"""Bounded reading of the files EdgeGate is handed: size, nesting depth, value and line counts.

A file from a user, a repository or a downloaded pack may be hostile or just broken: a
56 MB YAML list, an alias bomb, ten thousand nested brackets, a FIFO that never ends.
Every reader checks the bounds here *before* it walks or builds what it read, so loading
any EdgeGate file stays within a few seconds and a few hundred MB whatever its content, and
a file over a bound is one SpecError line naming it and the bound (exit 2).

The bounds (``Limits``) per kind of file, and why:

* ``CONFIG_LIMITS`` (pipeline, device, fleet YAML): 1 MiB, 64 levels, 20,000 values.
  Real files are a few KB with about a hundred values; 20,000 values take PyYAML's pure
  Python parser well under a second (bench/hostile_files.py).
* ``MANIFEST_LIMITS`` (a PromptPack's manifest.yaml): 4 MiB, 64 levels, 60,000 values.
  A manifest lists every file with its sha256 (about 110 bytes and 2 values a file), so
  this admits about 30,000 files (scoring that many on the emulator takes hours already)
  and parses in 2-4 s; 50,000 files would take 5-8 s on a 2-core machine, more than the
  "a few seconds" any file may cost.
* ``SAMPLES_LIMITS`` (a pack's JSONL samples files): 32 MiB, 64 levels, 100,000 lines.
* ``JSON_LIMITS`` (a JSON document such as an evidence bundle): 64 MiB, 64 levels.

The YAML value count counts what aliases repeat (an alias of a 1,000-value list counts
1,000), so a "billion laughs" bomb is refused while it is composed, before anything walks
it; see :mod:`edgegate.config.loader`. JSON has no aliases: size bounds its values.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgegate.errors import SpecError

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The bounds of one kind of file."""

    max_bytes: int
    max_depth: int = 64
    max_values: int = 20_000  # YAML: scalars and collections, aliases expanded
    max_lines: int = 100_000  # JSONL: lines (blank ones included)
    kind: str = "file"  # how messages name the kind of file: "a <kind> is limited to ..."


CONFIG_LIMITS = Limits(max_bytes=1 * MiB, max_values=20_000, kind="configuration file")
MANIFEST_LIMITS = Limits(max_bytes=4 * MiB, max_values=60_000, kind="PromptPack manifest")
SAMPLES_LIMITS = Limits(max_bytes=32 * MiB, max_lines=100_000, kind="samples file")
JSON_LIMITS = Limits(max_bytes=64 * MiB, kind="JSON file")

# How much of a hostile value an error message quotes, so that "one line" stays short.
EXCERPT_CHARS = 80


# Control characters as escapes, so that a quoted value cannot break the one line.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` as a message may quote it: control characters escaped, at most ``limit``
    characters, and the length of the rest when cut (``abc... (+99,920 characters)``)."""
    text = text.translate(_ESCAPES)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... (+{len(text) - limit + 3:,} characters)"


def size_text(n: int) -> str:
    """A byte count as people read it: ``1 MiB``, ``56.0 MiB``, ``812 bytes``."""
    if n >= MiB:
        return f"{n // MiB} MiB" if n % MiB == 0 else f"{n / MiB:.1f} MiB"
    return f"{n:,} bytes"


def read_bounded(path: Path, file: str, limits: Limits) -> bytes:
    """The bytes of the regular file ``path`` (``file`` names it in messages), refused when
    it is larger than ``limits.max_bytes``: its size is checked before it is read, and no
    more than the bound is read even when the file grows meanwhile. A FIFO, device or
    socket is refused before it is opened (reading one could block or never end).
    FileNotFoundError, IsADirectoryError and other OSErrors reach the caller, who words them.
    """
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(file, None, "not a regular file (a FIFO, device or socket); give a file")
    if st.st_size > limits.max_bytes:
        raise _too_large(file, st.st_size, limits)
    with open(path, "rb") as f:
        data = f.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise _too_large(file, len(data), limits)
    return data


def _too_large(file: str, size: int, limits: Limits) -> SpecError:
    return SpecError(
        file, None,
        f"{size_text(size)}, larger than the {size_text(limits.max_bytes)} a {limits.kind} may have",
    )


def too_deep(file: str, limits: Limits, line: int | None = None) -> SpecError:
    """The error of a value nested deeper than ``limits.max_depth`` levels."""
    return SpecError(
        file, None, f"nested deeper than {limits.max_depth} levels; a {limits.kind} never needs that", line
    )


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether ``value`` (parsed JSON) nests lists and objects deeper than ``max_depth``
    levels (a scalar at the top is level 1). Iterative: no Python recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def loads_json(text: str | bytes, file: str, limits: Limits = JSON_LIMITS, *, line: int | None = None) -> Any:
    """Parse one JSON document (or JSONL line ``line``) within ``limits``: too large,
    nested too deep, invalid JSON (a number of more than 4,300 digits included) are each one
    SpecError naming ``file`` (and the line)."""
    if len(text) > limits.max_bytes:
        raise _too_large(file, len(text), limits)
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep(file, limits, line) from None
    except json.JSONDecodeError as exc:
        raise SpecError(file, None, f"invalid JSON: {exc.msg}", line) from None
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise SpecError(file, None, f"invalid JSON: {excerpt(str(exc))}", line) from None
    if json_depth_exceeds(value, limits.max_depth):
        raise too_deep(file, limits, line)
    return value


def read_json(path: Path, file: str, limits: Limits = JSON_LIMITS) -> Any:
    """``read_bounded`` then ``loads_json``; not UTF-8 is a SpecError too."""
    data = read_bounded(path, file, limits)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(file, None, f"not UTF-8 text (byte {exc.start})") from None
    return loads_json(text, file, limits)


def decode_lines(data: bytes, file: str, limits: Limits) -> list[str]:
    """The lines of a UTF-8 JSONL file's bytes, refused over ``limits.max_lines``; a byte
    that is not UTF-8 is a SpecError naming its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(file, None, f"not UTF-8 text (byte {exc.start})", line) from None
    lines = text.splitlines()
    if len(lines) > limits.max_lines:
        raise SpecError(
            file, None, f"{len(lines):,} lines, more than the {limits.max_lines:,} a {limits.kind} may have"
        )
    return lines


def iter_jsonl(path: Path, file: str, limits: Limits = SAMPLES_LIMITS) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of the JSONL file ``path``, within
    ``limits`` (size checked before reading, lines before parsing, depth per line)."""
    for lineno, text in enumerate(decode_lines(read_bounded(path, file, limits), file, limits), start=1):
        if text.strip():
            yield lineno, loads_json(text, file, limits, line=lineno)
