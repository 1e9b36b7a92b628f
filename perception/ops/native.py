"""Loads the compiled op `perception.ops._C` (built by setup.py from perception/ops/csrc) once.

A missing or unusable extension is not an error here: the loader records why, the dispatch logs that
reason when it falls back to the reference, and raises it when an implementation is forced.
"""
from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from types import ModuleType

import torch

BUILD_HINT = (
    "build it from the repository root with `pip install --no-build-isolation -e .` or "
    "`python setup.py build_ext --inplace` (the CUDA kernels need nvcc, CUDA_HOME and a CUDA build of torch; "
    "see the README section 'GPU: the native deformable-attention op')"
)
EXTENSION_NAME = "perception.ops._C"


@dataclass(frozen=True)
class NativeOps:
    """module: the loaded extension, or None; status: what it holds, or why it could not be used."""

    module: ModuleType | None
    status: str

    def unavailable_reason(self, device_type: str) -> str | None:
        """None when kernels for tensors on `device_type` are loaded, otherwise why they are not."""
        if self.module is None:
            return self.status
        if device_type == "cuda" and not self.module.with_cuda:
            return (
                f"{EXTENSION_NAME} was built without CUDA kernels (at build time there was no CUDA toolkit, "
                "torch was a CPU-only build, or GDINO_OPS_BUILD=cpu)"
            )
        if device_type not in ("cpu", "cuda"):
            return f"there are no native kernels for {device_type} tensors"
        return None

    def require(self, device_type: str) -> None:
        """Raises RuntimeError with the reason and the build command unless `device_type` kernels are loaded."""
        unavailable = self.unavailable_reason(device_type)
        if unavailable is not None:
            raise RuntimeError(f"the native {device_type} kernels are not available: {unavailable}; {BUILD_HINT}")


def release(version: str) -> str:
    """'2.14.1+cu130' -> '2.14.1': the part of torch's version the extension ABI depends on."""
    match = re.match(r"\d+\.\d+\.\d+", version)
    return match.group(0) if match else version


@functools.cache
def load_native_ops() -> NativeOps:
    try:
        module = importlib.import_module(EXTENSION_NAME)
    except ImportError as error:
        return NativeOps(None, f"{EXTENSION_NAME} is not importable ({error})")
    running = release(torch.__version__)
    if module.torch_version != running:
        return NativeOps(None, f"{EXTENSION_NAME} was built against torch {module.torch_version}, this is torch {running}")
    kernels = "CPU and CUDA kernels" if module.with_cuda else "CPU kernels only"
    return NativeOps(module, f"{EXTENSION_NAME} is built with {kernels}")
