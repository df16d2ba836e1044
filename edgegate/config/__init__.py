"""Configuration files: the one YAML/pydantic loader, pipeline and device schemas.

Import from here (``from edgegate.config import load_pipeline``); the modules inside are
the loader (``loader.py``: YAML with line numbers, pydantic errors as ``file:line: field:
problem``), the pipeline schema (``pipeline.py``) and the device schemas (``device.py``).
"""

from edgegate.config.device import (
    DEVICE_KINDS,
    AdbDevice,
    AihubDevice,
    CpuDevice,
    DeviceBase,
    DeviceFileMissing,
    DeviceSpec,
    HexagonArch,
    HtpArchNumber,
    QnnEmulatorDevice,
    SocModel,
    SshDevice,
    device_files,
    devices_dirs,
    load_device,
)
from edgegate.config.loader import (
    ErrorWording,
    FieldPath,
    FieldProblem,
    GraphName,
    Name,
    NamedSpecModel,
    NonNegativeInt,
    PositiveInt,
    SpecModel,
    YamlDocument,
    context_base_dir,
    display_path,
    load_spec_file,
    parse_yaml,
    read_yaml,
    render_field_path,
    resolve_against,
)
from edgegate.config.pipeline import (
    AIMET_CONFIGS,
    BenchmarkSpec,
    PipelineSpec,
    aimet_config_for,
    config_digest,
    load_pipeline,
    load_pipeline_device,
)

__all__ = [
    "AIMET_CONFIGS", "DEVICE_KINDS", "AdbDevice", "AihubDevice", "BenchmarkSpec", "CpuDevice",
    "DeviceBase", "DeviceFileMissing", "DeviceSpec", "ErrorWording", "FieldPath", "FieldProblem",
    "GraphName", "HexagonArch", "HtpArchNumber", "Name", "NamedSpecModel", "NonNegativeInt",
    "PipelineSpec", "PositiveInt", "QnnEmulatorDevice", "SocModel", "SpecModel", "SshDevice",
    "YamlDocument", "aimet_config_for", "config_digest", "context_base_dir", "device_files", "devices_dirs",
    "display_path", "load_device", "load_pipeline", "load_pipeline_device", "load_spec_file",
    "parse_yaml", "read_yaml", "render_field_path", "resolve_against",
]
