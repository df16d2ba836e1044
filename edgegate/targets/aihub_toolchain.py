"""The AI Hub toolchain: which QAIRT a job asks for, and what actually ran.

* Asked: the device file's ``qairt_version`` (default pinned, see AihubDevice), unless the
  user's compile_options carry ``--qairt_version``; passed as ``--qairt_version`` to every
  compile, profile and inference job. ``latest`` and ``default`` are AI Hub's tags, resolved
  through ``get_frameworks()`` (Framework.api_tags / full_version) and recorded as resolved.
* Context binaries get a deterministic graph name: ``--qnn_options
  context_enable_graphs=<graph>`` (as ai-hub-models does), unless the user set --qnn_options.
* Recorded, per job: ``toolchain_of`` -> {"qairt", "device", "device_os", "chipset", "client"},
  from the compiled model's metadata (ModelMetadataKey.QAIRT_SDK_VERSION, else the deprecated
  QNN_SDK_VERSION) or the profile's ``tool_versions``, and the device AI Hub recorded on the
  job (``get_job(id).device``: for a "(Family)" device, the phone that ran).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from edgegate.errors import InputError
from edgegate.toolchain import join_values
from edgegate.targets.aihub_catalogue import attribute

QAIRT_TAGS = ("latest", "default")  # AI Hub resolves them at submit time: never a reusable compile
AOT_RUNTIMES = ("qnn_context_binary", "precompiled_qnn_onnx")  # context binaries: their graphs have names
TOOLCHAIN_KEYS = ("qairt", "device", "device_os", "chipset", "client")


def flag_value(options: str, flag: str) -> str | None:
    m = re.search(rf"{flag}[\s=]+(\S+)", options)
    return m.group(1) if m else None


def asked_qairt(spec: Any) -> str:
    """The QAIRT a device file asks for: its compile_options' --qairt_version, else qairt_version."""
    return flag_value(spec.compile_options, "--qairt_version") or spec.qairt_version


def resolve_qairt(asked: str, frameworks: Sequence[Any], where: str) -> str | None:
    """The full QAIRT version AI Hub runs for ``asked`` (a tag, an api_version such as '2.45'
    or a full version); None when AI Hub lists no QAIRT at all. An unknown version is an
    input error listing what AI Hub offers."""
    qairt = [f for f in frameworks if str(f.name).upper() == "QAIRT"]
    match = [f for f in qairt if asked in f.api_tags or asked in (f.api_version, f.full_version)
             or f.full_version.startswith(asked + ".")]
    if qairt and not match:
        offered = ", ".join(f.api_version + (f" ({', '.join(f.api_tags)})" if f.api_tags else "") for f in qairt)
        raise InputError(f"{where}: qairt_version: AI Hub offers no QAIRT '{asked}' (it offers: {offered}); "
                         "pin one of them, or use 'default' or 'latest'")
    return normalize_qairt(match[0].full_version) if match else None


def with_qairt(options: str, asked: str) -> str:
    """Options with the QAIRT asked for (unless they carry --qairt_version already)."""
    if "--qairt_version" in options:
        return options.strip()
    return f"{options} --qairt_version {asked}".strip()


def compile_options(runtime: str, user_options: str, asked: str, graph: str | None) -> str:
    """--target_runtime, the user's options, --qairt_version, and for context binaries a
    deterministic graph name (unless the user set --qnn_options)."""
    options = with_qairt(f"--target_runtime {runtime} {user_options}".strip(), asked)
    if graph is not None and runtime in AOT_RUNTIMES and "--qnn_options" not in user_options:
        options += f" --qnn_options context_enable_graphs={re.sub(r'[^A-Za-z0-9_]', '_', graph)}"
    return options


def normalize_qairt(version: str | None) -> str | None:
    """'v2.45.0.260326154327' (model metadata) and '2.45.0.260326154327' (tool_versions) alike."""
    if not version:
        return None
    return version[1:] if version[:1] in "vV" and version[1:2].isdigit() else version


def qairt_of_metadata(metadata: Mapping[Any, str]) -> str | None:
    """The QAIRT that compiled a model, from its metadata (as ai-hub-models' ToolVersions reads it)."""
    from qai_hub import ModelMetadataKey

    return normalize_qairt(metadata.get(ModelMetadataKey.QAIRT_SDK_VERSION) or metadata.get(ModelMetadataKey.QNN_SDK_VERSION))


def qairt_of_tool_versions(tool_versions: Sequence[Any]) -> str | None:
    """The QAIRT a profile or inference ran with (ProfileDetail.tool_versions: QAIRT, else QNN)."""
    by_name = {str(t.name).upper(): str(t.version) for t in tool_versions}
    return normalize_qairt(by_name.get("QAIRT") or by_name.get("QNN"))


def toolchain_of(device: Any, qairt: str | None, client: str) -> dict[str, str | None]:
    """The toolchain contract for one job: QAIRT, the device that actually ran it (name, OS,
    chipset attribute) and the qai-hub client version."""
    return {"qairt": qairt, "device": device.name or None, "device_os": device.os or None,
            "chipset": attribute(device.attributes, "chipset"), "client": client}


def merge_toolchains(per_graph: Mapping[str, Mapping[str, str | None]]) -> dict[str, str | None]:
    """One toolchain for several graphs: each value is a string, the distinct values of the
    graphs sorted and joined with ', ' when they differ (two phones of a family, say), None
    when no graph reported it. Per-graph values stay in details['profiles'][graph]['toolchain']."""
    return {k: join_values(t.get(k) for t in per_graph.values()) for k in TOOLCHAIN_KEYS}
