"""Configuration files: the one YAML/pydantic loader, pipeline and device schemas.

Import from here (``from edgegate.config import load_pipeline``); the modules inside are
the loader, the pipeline schema and the device schema.
"""

from edgegate.config.spec import (
    AIMET_CONFIGS,
    AdbDevice,
    AihubDevice,
    BenchmarkSpec,
    CpuDevice,
    DeviceSpec,
    Name,
    NonNegativeInt,
    PipelineSpec,
    PositiveInt,
    QnnEmulatorDevice,
    SpecModel,
    SshDevice,
    aimet_config_for,
    config_digest,
    devices_dirs,
    load_device,
    load_pipeline,
    load_pipeline_device,
    load_spec_file,
)

__all__ = [
    "AIMET_CONFIGS", "AdbDevice", "AihubDevice", "BenchmarkSpec", "CpuDevice", "DeviceSpec", "Name",
    "NonNegativeInt", "PipelineSpec", "PositiveInt", "QnnEmulatorDevice", "SpecModel", "SshDevice",
    "aimet_config_for", "config_digest", "devices_dirs", "load_device", "load_pipeline",
    "load_pipeline_device", "load_spec_file",
]
