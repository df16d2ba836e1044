"""The fleet's matrix: every pipeline x every selected device, less ``exclude``.

Devices are selected by name or path (``edgegate.config.load_device``, the one device
lookup) or by ``tag:<tag>`` (every device file in the device directories carrying the tag).
A pipeline or device file that exists but does not load becomes cells with an error, so the
rest of the fleet still runs; a selector that names nothing is an error in the fleet file.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from edgegate.config import device_files, devices_dirs, load_device, load_pipeline
from edgegate.errors import EdgeGateError, SpecError
from edgegate.fleet.model import Cell
from edgegate.fleet.spec import TAG_PREFIX, FleetSpec


def _device_files(spec: FleetSpec) -> tuple[list[Path], list[Path]]:
    """The directories device names resolve in (first wins) and every device file in them."""
    dirs = devices_dirs(spec.base_dir / spec.devices_dir if spec.devices_dir else None, spec.base_dir)
    return dirs, list(device_files(dirs).values())


def _select_devices(spec: FleetSpec, notes: list[str]) -> list[tuple[str, str, str | None]]:
    """(name, file, load error) of every selected device, in order, without repeats."""
    dirs, files = _device_files(spec)
    selected: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
    loaded: dict[Path, Any] = {}
    for i, selector in enumerate(spec.devices):
        if selector.startswith(TAG_PREFIX):
            tag = selector[len(TAG_PREFIX):]
            if not dirs:
                raise spec.error(("devices", i), f"'{selector}': no devices/ directory found; set devices_dir")
            matched = 0
            for f in files:
                if f not in loaded:
                    try:
                        loaded[f] = load_device(f.stem, devices_dir=f.parent)
                    except EdgeGateError as exc:
                        loaded[f] = None
                        notes.append(f"{f}: skipped while matching tags: {exc.message}")
                dev = loaded[f]
                if dev is not None and tag in dev.tags:
                    matched += 1
                    selected.setdefault(dev.name, (str(f.absolute()), None))
            if not matched:
                tags = sorted({t for d in loaded.values() if d is not None for t in d.tags})
                where = ", ".join(str(d) for d in dirs)
                raise spec.error(("devices", i), f"tag '{tag}' matches no device in {where} (tags: {', '.join(tags)})")
            continue
        try:
            dev = load_device(selector, devices_dir=dirs[0] if spec.devices_dir else None,
                              relative_to=spec.base_dir)
        except SpecError as exc:  # the device file exists but is invalid: its cells report it
            name = Path(selector).stem
            selected.setdefault(name, (selector, exc.message))
            continue
        except EdgeGateError as exc:  # unknown name / missing file: the fleet file is wrong
            raise spec.error(("devices", i), exc.message) from None
        path = dev.source_path if dev.source_path is not None else Path(selector)
        selected.setdefault(dev.name, (str(Path(path).absolute()), None))
    return [(name, ref, err) for name, (ref, err) in selected.items()]


def expand_matrix(spec: FleetSpec) -> tuple[list[Cell], list[str]]:
    """Every (pipeline, device) cell, interleaved by device, and notes about what was skipped."""
    notes: list[str] = []
    devices = _select_devices(spec, notes)
    pipelines: list[tuple[str, str, str | None]] = []
    for rel in spec.pipelines:
        path = str((spec.base_dir / rel).resolve())
        try:
            pipelines.append((load_pipeline(path).name, path, None))
        except EdgeGateError as exc:
            pipelines.append((Path(rel).stem, path, exc.message))
    cells = []
    for pname, ppath, perr in pipelines:
        for dname, dref, derr in devices:
            if any((x.pipeline in (None, pname)) and (x.device in (None, dname)) for x in spec.exclude):
                continue
            cells.append(Cell(pname, ppath, dname, dref, perr or derr))
    # Interleaved by device, so the first cells dispatched are on as many boards as possible.
    by_device: OrderedDict[str, list[Cell]] = OrderedDict()
    for c in cells:
        by_device.setdefault(c.device, []).append(c)
    interleaved = []
    while any(by_device.values()):
        for queue in by_device.values():
            if queue:
                interleaved.append(queue.pop(0))
    return interleaved, notes
