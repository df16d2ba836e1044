"""AI Hub's device catalogue as it is today, and the device files that point into it.

AI Hub's devices change: ai-hub-models 0.45 dropped "RB5 (Proxy)", "QCS8250 (Proxy)" and
"QCS6490 (Proxy)"; QCS6490 is now the "Dragonwing RB3 Gen 2 Vision Kit", and "QCS9075
(Proxy)" gave way to the "Dragonwing IQ-9075 EVK". Only a live ``get_devices()`` is the
truth, so a device file is resolved against it when a run starts, and a device AI Hub no
longer lists fails at once (before any upload) with the closest devices by chipset and, where
this project has board files for the same Hexagon, the board path.

``local_device_files`` and ``aihub_catalogue`` are the library behind ``edgegate devices``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgegate.config import AihubDevice, device_files, devices_dirs, load_device
from edgegate.errors import EdgeGateError, InputError

BOARD_KINDS = ("ssh", "adb")
# Devices AI Hub has retired (ai-hub-models 0.45, 2026-01, and issue 282): a name from this list
# gets no "closest names" (another Proxy's name is close, and just as gone or unrelated).
RETIRED = frozenset({"RB5 (Proxy)", "QCS8250 (Proxy)", "QCS6490 (Proxy)", "QCS9075 (Proxy)"})


def default_runtime(attributes: Sequence[str]) -> str:
    """A runtime the device can run both variants on.

    HTPs with FP16 (v69+) run the FP32 baseline in a QNN context binary too; older parts
    (RB5's v66 DSP, QCS6490's v68) have no float path on the NPU, so TFLite (NPU for INT8
    through the QNN delegate, GPU/CPU for FP32); ONNX Runtime where there is no TFLite.
    """
    attrs = set(attributes)
    if "framework:qnn" in attrs and "htp-supports-fp16:true" in attrs:
        return "qnn_context_binary"
    if "framework:tflite" in attrs:
        return "tflite"
    if "framework:onnx" in attrs:
        return "onnx"
    return "qnn_context_binary"


def attribute(attributes: Sequence[str], prefix: str) -> str | None:
    """The value of the first ``prefix:value`` attribute (``chipset``, ``hexagon``, ``os``)."""
    return next((a.split(":", 1)[1] for a in attributes if a.startswith(prefix + ":")), None)


def _hexagon_number(value: str | None) -> int | None:
    return int(value[1:]) if value and value[:1] == "v" and value[1:].isdigit() else None


def closest_by_chipset(spec: Any, every: Sequence[Any], n: int = 3) -> list[Any]:
    """AI Hub devices nearest to what a device file asks for: the nearest Hexagon version
    first (the NPU generation decides what compiles and how it is quantized), then the most
    similar chipset name, then the same form factor."""
    want_hex = _hexagon_number(spec.arch or attribute(spec.attributes, "hexagon"))
    want_chip = attribute(spec.attributes, "chipset") or spec.chipset or ""
    want_form = attribute(spec.attributes, "format")

    def rank(d: Any) -> tuple[float, float, int, str]:
        h = _hexagon_number(attribute(d.attributes, "hexagon"))
        gap = abs(h - want_hex) if h is not None and want_hex is not None else 99
        similar = difflib.SequenceMatcher(None, want_chip, attribute(d.attributes, "chipset") or "").ratio()
        return (gap, -similar, int(attribute(d.attributes, "format") != want_form), d.name)

    return sorted(every, key=rank)[:n]


def describe_listing(d: Any) -> str:
    chip, hexagon = attribute(d.attributes, "chipset"), attribute(d.attributes, "hexagon")
    return f"'{d.name}' ({', '.join(x for x in (chip, f'hexagon {hexagon}' if hexagon else None) if x)})"


def board_files(spec: Any) -> list[str]:
    """This project's board device files (kind ssh/adb) for the same Hexagon as ``spec``."""
    if not spec.arch:
        return []
    base = Path(spec.source_path).parent if getattr(spec, "source_path", None) else None
    try:
        files = device_files(devices_dirs(None, base))
    except EdgeGateError:
        return []
    out = []
    for name, path in sorted(files.items()):
        try:
            other = load_device(str(path))
        except EdgeGateError:
            continue
        if other.kind in BOARD_KINDS and other.arch == spec.arch:
            out.append(name)
    return out


def unlisted_device_error(spec: Any, every: Sequence[Any]) -> InputError:
    """The error for a device file AI Hub lists no device for."""
    where = spec.source_label
    asked = ", ".join(spec.attributes)
    names = sorted({d.name for d in every})
    hints = []
    if spec.device:
        retired = spec.device in RETIRED
        close = [] if retired else difflib.get_close_matches(spec.device, names, n=3, cutoff=0.6)
        head = (f"{where}: device: AI Hub no longer lists '{spec.device}'" if retired else
                f"{where}: device: AI Hub lists no device named '{spec.device}'") + (f" ({asked})" if asked else "")
        if close:
            hints.append("closest names: " + ", ".join(f"'{c}'" for c in close))
    else:
        attrs = sorted({a for d in every for a in d.attributes})
        near = sorted({m for a in spec.attributes for m in difflib.get_close_matches(a, attrs, n=3, cutoff=0.5)})
        head = f"{where}: attributes: no AI Hub device has all of {asked}"
        if near:
            hints.append(f"closest attributes: {', '.join(near)}")
    nearest = closest_by_chipset(spec, every)
    if nearest:
        hints.append("closest by chipset: " + ", ".join(describe_listing(d) for d in nearest))
    boards = board_files(spec)
    if boards:
        hints.append(f"to measure the {spec.chipset or spec.arch} itself, use the board path: "
                     + " or ".join(boards) + " (kind ssh/adb)")
    hints.append("`edgegate devices` lists AI Hub's devices")
    return InputError(head + "; " + "; ".join(hints))


# ----------------------------------------------------------------------------- `edgegate devices`


@dataclass(frozen=True)
class LocalDeviceFile:
    """One device file of this project (``devices/*.yaml``)."""

    name: str
    path: Path
    kind: str | None  # None: the file does not load (see ``problem``)
    chipset: str | None = None
    arch: str | None = None
    aihub_device: str | None = None  # kind aihub: the AI Hub device name it asks for
    aihub_attributes: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class AihubListing:
    """One device AI Hub lists now, and the local device files that resolve to it."""

    name: str
    os: str
    attributes: tuple[str, ...]
    chipset: str | None
    hexagon: str | None
    local: tuple[str, ...]  # names of local aihub device files that resolve to this device


@dataclass(frozen=True)
class AihubCatalogue:
    devices: tuple[AihubListing, ...]  # as get_devices() returns them
    unmatched: tuple[str, ...]  # local aihub device files AI Hub lists no device for (e.g. rb5-aihub)
    client_version: str


def local_device_files(devices_dir: Path | None = None, relative_to: Path | None = None) -> list[LocalDeviceFile]:
    """Every device file found the way a device name is looked up (``--devices-dir``,
    $EDGEGATE_DEVICES_DIR, else every ``devices/`` up from ``relative_to`` and the cwd);
    a file that does not load is listed with its problem."""
    out = []
    for name, path in sorted(device_files(devices_dirs(devices_dir, relative_to)).items()):
        try:
            d = load_device(str(path))
        except EdgeGateError as exc:
            out.append(LocalDeviceFile(name, path, None, problem=exc.message))
            continue
        aihub = isinstance(d, AihubDevice)
        out.append(LocalDeviceFile(
            name, path, d.kind, d.chipset, d.arch,
            aihub_device=d.device if aihub else None,
            aihub_attributes=tuple(d.attributes) if aihub else (),
        ))
    return out


def maps_to(local: LocalDeviceFile, listed: Any) -> bool:
    """Whether a local aihub device file resolves to an AI Hub device (by name and attributes)."""
    if local.kind != "aihub":
        return False
    return (local.aihub_device is None or local.aihub_device == listed.name) and set(local.aihub_attributes) <= set(listed.attributes)


def aihub_catalogue(local: Sequence[LocalDeviceFile]) -> AihubCatalogue:
    """AI Hub's live device list (one ``get_devices()``; needs credentials, InputError without)
    with the local device files that map to each device."""
    from edgegate.targets.aihub_session import HubSession

    hub = HubSession("devices", poll_interval_s=1.0, job_timeout_s=1.0, max_retries=3)
    every = hub.call("list devices", lambda: hub.client.get_devices())
    listings = tuple(
        AihubListing(d.name, d.os, tuple(d.attributes), attribute(d.attributes, "chipset"),
                     attribute(d.attributes, "hexagon"), tuple(f.name for f in local if maps_to(f, d)))
        for d in every
    )
    unmatched = tuple(f.name for f in local if f.kind == "aihub" and not any(maps_to(f, d) for d in every))
    return AihubCatalogue(listings, unmatched, hub.client_version)
