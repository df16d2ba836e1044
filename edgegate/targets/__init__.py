"""Targets: one module per way of reaching hardware, all behind the Target protocol.

``target_for_device`` maps a device file's ``kind`` to its target. Modules are imported
only when a device of their kind is used, so a host-only run never imports qai_hub or
paramiko.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgegate.errors import InputError

# kind -> "module:factory"; each factory takes a DeviceSpec and returns a Target.
TARGET_FACTORIES: dict[str, str] = {
    "cpu": "edgegate.targets.local:target_for_device",
    "qnn-emulator": "edgegate.targets.local:target_for_device",
    "aihub": "edgegate.targets.aihub:target_for_device",
    "ssh": "edgegate.targets.qnn_remote:target_for_device",
    "adb": "edgegate.targets.qnn_remote:target_for_device",
}


def target_for_device(device: Any) -> Any:
    """The Target for a DeviceSpec, by its kind."""
    ref = TARGET_FACTORIES.get(device.kind)
    if ref is None:
        raise InputError(f"device '{device.name}': no target for kind '{device.kind}' (known: {', '.join(TARGET_FACTORIES)})")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InputError(
                f"device '{device.name}': kind '{device.kind}' is not runnable in this version of EdgeGate yet"
            ) from None
        raise
    return getattr(module, attr)(device)
