"""ament_python package `grounding_dino_ros`: the pure `perception` library plus the ROS `nodes`.

The native multi-scale deformable-attention op (perception/ops/csrc) is built here as the extension
module `perception.ops._C`; without it the package works on the pure-PyTorch path.
- It is built when torch is importable at build time (install with `--no-build-isolation`, so the
  build sees the torch it will run with) and a C++ compiler exists; CUDA sources are added when a CUDA
  toolkit and a CUDA-enabled torch are both present. The build says which it built.
- GDINO_OPS_BUILD: `auto` (default: as above; a failed build is reported and the install goes on
  without the op), `cpu` (CPU kernels only, fails if they cannot be built), `cuda` (CPU and CUDA
  kernels, fails if either cannot be built), `none` (skip).
- CUDA architectures: TORCH_CUDA_ARCH_LIST, default DEFAULT_CUDA_ARCH_LIST below. Each one costs
  compile time, so set only your GPU's (e.g. TORCH_CUDA_ARCH_LIST=8.7 on a Jetson Orin).
- Rebuild in place after changing the sources: `python setup.py build_ext --inplace`
  (or reinstall with `pip install --no-build-isolation -e .`).
"""
import os
import shutil
import subprocess
import sys
from glob import glob

from setuptools import find_packages, setup
from setuptools.errors import BaseError, CCompilerError

PACKAGE_NAME = "grounding_dino_ros"

OPS_SOURCE_DIR = "perception/ops/csrc"
OPS_BUILD_MODES = ("auto", "cpu", "cuda", "none")
# Compute capabilities compiled when TORCH_CUDA_ARCH_LIST is unset, covering every GPU family CUDA 13
# supports (code for X.y also runs on X.z with z >= y): 7.5 Turing (T4, RTX 20), 8.0 A100, 8.6 RTX 30
# and RTX 40 (8.9), 8.7 Jetson Orin, 9.0 H100, 10.0 B200 and B300, 11.0 Jetson Thor, 12.0 RTX 50 and
# DGX Spark; +PTX lets newer GPUs JIT-compile. 8.6 and 8.7 are named (8.0 code would run) so the most
# common desktop and Jetson GPUs get code tuned for them.
DEFAULT_CUDA_ARCH_LIST = "7.5;8.0;8.6;8.7;9.0;10.0;11.0;12.0+PTX"
REBUILD_COMMAND = "python setup.py build_ext --inplace"


def report(message: str) -> None:
    print(f"{PACKAGE_NAME} native op: {message}", file=sys.stderr)


def find_cuda_toolkit() -> str | None:
    """The CUDA toolkit root holding bin/nvcc and include/cuda_runtime.h; CUDA_HOME wins when set.

    Torch guesses the root from `which nvcc`, which is wrong when nvcc is a wrapper script outside the
    toolkit (as in /usr/local/bin here); following symlinks and trying /usr/local/cuda fixes that.
    """
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [explicit] if explicit else []
    nvcc = shutil.which("nvcc")
    if not explicit and nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    if not explicit:
        candidates.append("/usr/local/cuda")
    for root in candidates:
        if os.path.isfile(os.path.join(root, "bin", "nvcc")) and os.path.isfile(
            os.path.join(root, "include", "cuda_runtime.h")
        ):
            return root
    return None


def native_op_build() -> tuple[list, dict]:
    """(ext_modules, cmdclass) for `setup`, or nothing when the op cannot or should not be built."""
    mode = os.environ.get("GDINO_OPS_BUILD", "auto")
    if mode not in OPS_BUILD_MODES:
        raise SystemExit(f"GDINO_OPS_BUILD must be one of {', '.join(OPS_BUILD_MODES)}, got {mode!r}")
    if mode == "none":
        report("not built (GDINO_OPS_BUILD=none); the pure-PyTorch path will be used")
        return [], {}
    try:
        import torch
    except ImportError as error:
        return skip_build(mode, f"torch is not importable at build time ({error}); install torch, then "
                          f"`pip install --no-build-isolation -e .` or `{REBUILD_COMMAND}`")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return skip_build(mode, f"no C++ compiler `{compiler}` on PATH (set CXX or install g++)")
    cuda_root = find_cuda_toolkit()
    cuda_missing = [
        reason
        for reason, missing in (
            (f"torch {torch.__version__} is a CPU-only build", torch.version.cuda is None),
            ("no CUDA toolkit (set CUDA_HOME to the directory holding bin/nvcc)", cuda_root is None),
            ("GDINO_OPS_BUILD=cpu", mode == "cpu"),
        )
        if missing
    ]
    if mode == "cuda" and cuda_missing:
        raise SystemExit(f"GDINO_OPS_BUILD=cuda but the CUDA kernels cannot be built: {'; '.join(cuda_missing)}")
    if not cuda_missing:
        # Read by torch.utils.cpp_extension when it is imported, so set before that import.
        os.environ["CUDA_HOME"] = cuda_root
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCH_LIST)
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    # at::parallel_for runs in parallel only when the kernels are compiled for torch's OpenMP backend;
    # no contraction into FMA, so every CPU (and the AVX2 clone of the forward) rounds alike; no debug
    # information (Python's CFLAGS ask for it), which would double the compile time of torch's headers.
    openmp = ["-fopenmp"] if torch.backends.openmp.is_available() else []
    cxx_flags = ["-O3", "-g0", "-ffp-contract=off", *openmp]
    sources = sorted(glob(f"{OPS_SOURCE_DIR}/*.cpp"))
    headers = sorted(glob(f"{OPS_SOURCE_DIR}/*.h") + glob(f"{OPS_SOURCE_DIR}/*.cuh"))
    if cuda_missing:
        report(f"building the CPU kernels only ({'; '.join(cuda_missing)})")
        extension = CppExtension(
            "perception.ops._C",
            sources,
            depends=headers,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=openmp,
            optional=mode == "auto",
        )
    else:
        report(
            f"building the CPU and CUDA kernels (CUDA_HOME={cuda_root}, torch CUDA {torch.version.cuda}, "
            f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']})"
        )
        extension = CUDAExtension(
            "perception.ops._C",
            sources + sorted(glob(f"{OPS_SOURCE_DIR}/*.cu")),
            depends=headers,
            extra_compile_args={"cxx": [*cxx_flags, "-DGDINO_WITH_CUDA"], "nvcc": ["-O3", "-DGDINO_WITH_CUDA"]},
            extra_link_args=openmp,
            optional=mode == "auto",
        )
    kernels = "CPU kernels" if cuda_missing else "CPU and CUDA kernels"
    return [extension], {"build_ext": build_command(BuildExtension, mode, kernels)}


def skip_build(mode: str, reason: str) -> tuple[list, dict]:
    if mode != "auto":
        raise SystemExit(f"GDINO_OPS_BUILD={mode} but the native op cannot be built: {reason}")
    report(f"not built: {reason}; the pure-PyTorch path will be used")
    return [], {}


def build_command(base: type, mode: str, kernels: str) -> type:
    """torch's BuildExtension; in `auto` mode a failed compile is reported and the install goes on."""

    class BuildNativeOps(base):
        def build_extension(self, ext) -> None:
            try:
                super().build_extension(ext)
            except (RuntimeError, OSError, subprocess.CalledProcessError, CCompilerError, BaseError) as error:
                # torch raises RuntimeError when ninja fails, the others come from setuptools' own
                # compiler driver (no ninja) or a broken compiler. The extension is `optional` in auto
                # mode, so setuptools then skips copying it into the source tree.
                if mode != "auto":
                    raise
                report(
                    f"build FAILED ({error}); installed without it, the pure-PyTorch path will be used. "
                    f"The compiler output is above; after fixing it, rebuild with `{REBUILD_COMMAND}`"
                )
            else:
                report(f"built {ext.name} with the {kernels}")

        def copy_extensions_to_source(self) -> None:
            """In-place builds: unlink the old module first, so the copy is a new file (processes that
            loaded the old one keep running) and a failed build leaves no stale module behind."""
            for ext in self.extensions:
                in_place = self.get_ext_filename(self.get_ext_fullname(ext.name))
                if os.path.exists(in_place):
                    os.remove(in_place)
            super().copy_extensions_to_source()

    return BuildNativeOps


ext_modules, cmdclass = native_op_build()

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(include=["perception", "perception.*", "nodes", "nodes.*"]),
    package_data={"perception": ["assets/*/*", "interfaces/vision_msgs/msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        # The detector runs on numpy 2 (GPU images ship it); the tracking stack's numpy<2 comes with norfair
        # (requirements.txt pins the whole stack for the tests).
        "numpy>=1.24",
        "transformers>=5.0,<6",
        "safetensors",
        "pyyaml",
    ],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
    maintainer="grounding_dino_ros maintainers",
    maintainer_email="maintainers@grounding-dino-ros.invalid",
    description="Open-set detection and tracking with Grounding DINO for ROS 2 and offline video.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gdino = perception.cli.main:main",
            "detector_node = nodes.detector_node:main",
            "video_source_node = nodes.video_source_node:main",
        ],
    },
)
