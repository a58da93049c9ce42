"""Builds the compiled extension of pyautoencoder_fast.

* ``pyautoencoder_fast._C``: the op schemas, the autograd kernels (csrc/autograd)
  and, when built with CUDA, the CUDA kernels; imported first.
* ``pyautoencoder_fast._cpu_<capability>``: the CPU kernels (csrc/cpu), compiled
  once per instruction set (DEFAULT, AVX2, AVX512) with that set's flags, as
  ATen compiles its own kernels. At import the package loads the one that
  matches ATen's CPU capability (``torch.backends.cpu.get_cpu_capability()``,
  which honours ``ATEN_CPU_CAPABILITY``), so one build runs on every x86-64 CPU.

The CUDA kernels (csrc/cuda/*.cu) are built into ``_C`` when torch is a CUDA
build and a CUDA toolkit (nvcc) is found; a GPU is not needed to build them.

Environment variables:
  PYAUTOENCODER_FAST_CPU_CAPABILITIES  comma-separated subset of DEFAULT, AVX2,
                                       AVX512 to build, exactly those (default:
                                       all three on x86-64, DEFAULT elsewhere).
                                       Only a build with DEFAULT imports on
                                       every CPU; on one that supports none of
                                       those built, the import says so and the
                                       package uses its PyTorch reference.
  FORCE_CUDA                           1: build the CUDA kernels, or fail saying
                                       why not (CPU build of torch, no toolkit);
                                       0: CPU kernels only; unset: CUDA when
                                       torch is a CUDA build and nvcc is found.
  CUDA_HOME (or CUDA_PATH)             the CUDA toolkit (default: where the
                                       `nvcc` on PATH really lives, wrapper
                                       scripts followed, else /usr/local/cuda).
  TORCH_CUDA_ARCH_LIST                 GPU architectures, e.g. "8.0;9.0+PTX"
                                       (default: the visible GPUs', or
                                       "8.0;9.0+PTX" without one: sm_80, sm_90
                                       and PTX that newer GPUs compile at load).
  DEBUG=1                              -O0 -g build (device code: -G).
  PYAUTOENCODER_FAST_UNITY             1 (default): the files of csrc/cpu,
                                       csrc/autograd and csrc/cuda are compiled
                                       as a few translation units per folder (a
                                       unity build: the torch headers are parsed
                                       once per unit, not once per file, which
                                       was most of the build time);
                                       0: one translation unit per file (an
                                       edit then recompiles only that file).
  MAX_JOBS                             parallel compile jobs (ninja) per extension.
                                       The extensions are built at the same time
                                       (`build_ext -j N`: N at once).
"""

import copy
import glob
import os
import platform
import re
import shutil
import subprocess

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "pyautoencoder_fast"

# Flags that make at::vec::Vectorized as wide as the instruction set (without
# them it compiles to its scalar DEFAULT implementation); the same as ATen's.
CPU_CAPABILITY_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-DCPU_CAPABILITY_AVX2"],
    "AVX512": [
        "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", "-mbmi2",
        "-DCPU_CAPABILITY_AVX512",
    ],
}


def cpu_capabilities() -> list[str]:
    requested = os.environ.get("PYAUTOENCODER_FAST_CPU_CAPABILITIES", "").strip()
    if not requested:
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        return list(CPU_CAPABILITY_FLAGS) if x86 else ["DEFAULT"]
    names = [n.strip().upper() for n in requested.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CPU_CAPABILITY_FLAGS))
    if unknown:
        raise SystemExit(
            f"PYAUTOENCODER_FAST_CPU_CAPABILITIES: unknown {unknown}; expected a subset of {list(CPU_CAPABILITY_FLAGS)}"
        )
    if not names:
        raise SystemExit(f"PYAUTOENCODER_FAST_CPU_CAPABILITIES={requested!r} names no instruction set")
    return [c for c in CPU_CAPABILITY_FLAGS if c in names]


def find_cuda_toolkit() -> str | None:
    """The CUDA toolkit's root directory (bin/nvcc, include/, lib64/), or None.

    CUDA_HOME or CUDA_PATH when set; else the toolkit that the `nvcc` on PATH
    runs. torch would take that nvcc's parent directory, which is wrong when
    nvcc is a wrapper script (such as /usr/local/bin/nvcc running
    /usr/local/cuda-13.0/bin/nvcc: the link then fails, "cannot find
    -lcudart"), so nvcc is asked (`nvcc -dryrun` prints its TOP directory);
    else /usr/local/cuda."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "/usr/local/cuda" if os.path.isfile("/usr/local/cuda/bin/nvcc") else None
    try:
        dryrun = subprocess.run(
            [nvcc, "-dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True, timeout=120
        )
        match = re.search(r"^#\$ TOP=(.+)$", dryrun.stdout + dryrun.stderr, re.MULTILINE)
    except (OSError, subprocess.SubprocessError):
        match = None
    if match:
        top = os.path.normpath(match.group(1).strip().strip('"'))
        if os.path.isfile(os.path.join(top, "bin", "nvcc")):
            return top
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def use_cuda() -> bool:
    """Whether to build the CUDA kernels (FORCE_CUDA, above). When it does, it
    exports CUDA_HOME (and the default TORCH_CUDA_ARCH_LIST) for
    torch.utils.cpp_extension, which reads CUDA_HOME once, when imported: so
    this runs before that import, and the CPU-only build leaves both alone."""
    force = os.environ.get("FORCE_CUDA", "").strip()
    if force == "0":
        return False
    import torch

    if torch.version.cuda is None:
        if force == "1":
            raise SystemExit(f"FORCE_CUDA=1 needs a CUDA build of torch; this one is {torch.__version__}")
        return False
    toolkit = find_cuda_toolkit()
    nvcc = os.path.join(toolkit, "bin", "nvcc") if toolkit else None
    if nvcc is None or not os.path.isfile(nvcc):
        if force == "1":
            raise SystemExit(
                f"FORCE_CUDA=1 but no CUDA toolkit was found ({nvcc or 'no nvcc on PATH'}); "
                "set CUDA_HOME to the toolkit's directory"
            )
        return False
    os.environ["CUDA_HOME"] = toolkit
    # Without a visible GPU, torch has no architecture to target: build sm_80
    # (A100) and sm_90 (H100) code, and PTX that newer GPUs compile at load.
    if not os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() and torch.cuda.device_count() == 0:
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    return True


WITH_CUDA = use_cuda()  # before the import below (CUDA_HOME)

from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
    include_paths,
)


def cuda_system_includes() -> tuple[list[str], list[str]]:
    """(torch's include dirs, CUDA math-library include dirs), given to the
    CUDA build as -isystem.

    torch's headers become system headers (as CMake treats an imported
    target's), so the warnings-as-errors flags judge our sources only: gcc's
    -Wextra warns in torch's CUDA headers (torch 2.13: unused parameters in
    ATen/native/cuda/CUDALoops.cuh and c10/cuda/CUDACachingAllocator.h).

    ATen/cuda/CUDAContext.h includes cusparse.h (and cublas, cusolver...). A
    toolkit installed without the math libraries (nvcc and the runtime only)
    is completed with the headers of the nvidia-* wheels that the pip CUDA
    build of torch installs beside it (site-packages/nvidia/*/include), as
    -isystem, i.e. after the toolkit's own -I include dir: the wheels'
    cuda_runtime.h must not shadow the toolkit's."""
    import torch

    torch_dirs = include_paths()
    math_dirs = []
    if not os.path.isfile(os.path.join(CUDA_HOME, "include", "cusparse.h")):
        site_packages = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
        math_dirs = sorted(glob.glob(os.path.join(site_packages, "nvidia", "*", "include")))
    return torch_dirs, math_dirs


def nvcc_flags(debug: bool, system_includes: list[str]) -> list[str]:
    # No --use_fast_math: the CUDA kernels must compute what the CPU kernels
    # compute, infinities, NaN and denormals included.
    flags = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
    flags += ["--extended-lambda", "--expt-relaxed-constexpr"]
    # Every warning fails the build: nvcc's own (-Werror=all-warnings), the
    # host compiler's on our .cu files (-Wall -Wextra; gcc knows no
    # `#pragma unroll`, hence -Wno-unknown-pragmas) and, outside -G debug
    # builds, a register spill (ptxas -warn-spills).
    flags += ["-Werror=all-warnings", "-Xcompiler=-Wall,-Wextra,-Wno-unknown-pragmas,-Werror"]
    if not debug:
        flags += ["-Xptxas=-warn-spills,-Werror"]
    for path in system_includes:
        flags += ["-isystem", path]
    # torch adds the -gencode flags of TORCH_CUDA_ARCH_LIST only when no flag
    # contains "arch", which a path may: then they are added here.
    if any("arch" in f for f in flags):
        from torch.utils.cpp_extension import _get_cuda_arch_flags

        flags += _get_cuda_arch_flags()
    return flags


# Files of a unity build that get units of their own. On the GPU the count
# likelihoods (three likelihoods, three sets of derivatives, four dtypes) are
# each about as much device code as all the other kernels together: three
# units keep the cores busy. On the CPU one unit per library is faster on 2
# cores (159 s against 174 s for the whole build, with the count likelihoods
# in a unit of their own: the four libraries already compile side by side).
UNITY_OWN_UNITS = {
    "cuda": [["count_log_likelihood"], ["nb_mixture_log_likelihood"]],
}


def unity_sources(folder: str, suffix: str = ".cpp") -> list[str]:
    """The sources of csrc/<folder>/*<suffix> for a unity build: generated
    files (build/unity/<folder>*<suffix>) that each include several of them,
    or the files themselves with PYAUTOENCODER_FAST_UNITY=0.

    Each of these files spent most of its compile time parsing the same torch
    headers (torch/autograd.h alone took 8 s of autograd/elbo.cpp's 14 s): the
    ten autograd files took about 140 s one by one and take 20 s as one unit.
    The files in UNITY_OWN_UNITS[folder] form units of their own, the rest one
    unit. Every file keeps its helpers in a namespace of its own
    (paf::<folder>::<op>), so no name of one file meets another's. A
    generated file is rewritten only when its list changes; ninja's depfiles
    name the included sources, so an edit rebuilds the unit that holds it."""
    files = sorted(glob.glob(os.path.join("csrc", folder, "*" + suffix)))
    if os.environ.get("PYAUTOENCODER_FAST_UNITY", "1").strip() == "0" or len(files) < 2:
        return files
    stem = lambda f: os.path.basename(f)[: -len(suffix)]  # noqa: E731
    own = [[f for f in files if stem(f) in names] for names in UNITY_OWN_UNITS.get(folder, [])]
    own = [group for group in own if group]
    rest = [f for f in files if not any(f in group for group in own)]
    units = []
    for name, group in [(f"{folder}_{stem(g[0])}", g) for g in own] + ([(folder, rest)] if rest else []):
        path = os.path.join("build", "unity", name + suffix)
        text = f"// Generated by setup.py: a unit of the unity build of csrc/{folder} (PYAUTOENCODER_FAST_UNITY).\n"
        text += "".join(f'#include "{os.path.relpath(f, os.path.dirname(path))}"\n' for f in group)
        if not os.path.isfile(path) or open(path).read() != text:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        units.append(path)
    return units


def write_build_config(capabilities: list[str], with_cuda: bool) -> None:
    # Read by pyautoencoder_fast/_backend.py to know which CPU libraries exist.
    path = os.path.join(ROOT, PACKAGE, "_build_config.py")
    with open(path, "w") as f:
        f.write("# Generated by setup.py; not tracked.\n")
        f.write(f"CPU_CAPABILITIES = {tuple(capabilities)!r}\n")
        f.write(f"WITH_CUDA = {with_cuda!r}\n")


def extensions():
    debug = os.environ.get("DEBUG", "0") == "1"
    capabilities = cpu_capabilities()
    with_cuda = WITH_CUDA
    write_build_config(capabilities, with_cuda)

    # -g0: Python's own flags (sysconfig CFLAGS, which torch puts first) hold
    # -g, and debug information doubles the compile time of these
    # template-heavy files (count_log_likelihood.cpp, AVX2: 40 s with it,
    # 21 s without) and makes the objects 30 times larger.
    common = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    common += ["-fopenmp", "-fvisibility=hidden"]  # at::parallel_for is inline OpenMP in this torch build
    link = ["-fopenmp"] + (["-g"] if debug else [])
    # PYAUTOENCODER_FAST_SANITIZE=address,undefined: the sanitizer build of
    # .ci/sanitizers (every report is fatal; run with libasan preloaded).
    sanitize = os.environ.get("PYAUTOENCODER_FAST_SANITIZE", "").strip()
    if sanitize:  # (-O1: the instrumented -O3 build takes 12 minutes on 2 cores)
        # -g1: line tables, all that a report's stack trace reads.
        flags = [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
        flags += ["-g" if debug else "-g1"]
        common = ["-O1" if f == "-O3" else f for f in common if f != "-g0"] + flags
        link += flags

    # csrc/common/*.cpp: out-of-line helpers of the shared headers (checks.cpp),
    # linked into _C and into each CPU kernel library.
    common_sources = sorted(glob.glob(os.path.join("csrc", "common", "*.cpp")))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += unity_sources("autograd") + common_sources
    extra_compile_args = {"cxx": common}
    extension = CppExtension
    if with_cuda:
        extension = CUDAExtension
        sources += unity_sources("cuda", ".cu")
        torch_dirs, math_dirs = cuda_system_includes()
        extra_compile_args["nvcc"] = nvcc_flags(debug, torch_dirs + math_dirs)
        # (C++ sources of _C that include CUDA headers find them too.)
        extra_compile_args["cxx"] = common + [f for d in math_dirs for f in ("-isystem", d)]
    modules = [
        extension(
            name=f"{PACKAGE}._C",
            sources=sources,
            extra_compile_args=extra_compile_args,
            extra_link_args=link,
            define_macros=[("WITH_CUDA", None)] if with_cuda else [],
        )
    ]
    # One library of CPU kernels per instruction set; each is loaded alone,
    # so the copies never meet (no symbol of one can resolve to another).
    cpu_sources = unity_sources("cpu") + common_sources
    for capability in capabilities:
        flags = [f"-DCPU_CAPABILITY={capability}"] + CPU_CAPABILITY_FLAGS[capability]
        modules.append(
            CppExtension(
                name=f"{PACKAGE}._cpu_{capability.lower()}",
                sources=cpu_sources,
                extra_compile_args={"cxx": common + flags},
                extra_link_args=link,
            )
        )
    return modules


class BuildPerExtensionDir(BuildExtension):
    """BuildExtension with one object folder per extension: the CPU kernel
    libraries compile the same sources with different flags, and separate
    folders keep every library's objects (incremental rebuilds stay incremental).

    The extensions are built at the same time unless ``build_ext -j N`` says
    how many at once (each with its own ninja and MAX_JOBS jobs): after the
    unity build each extension is a few long units (a CPU library one), and
    built one after the other they would leave all cores but one idle. Each extension is
    built through a copy of this command, so no thread changes another's
    folder."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = max(1, len(self.extensions or []))

    def build_extension(self, ext):
        per_extension = copy.copy(self)
        per_extension.build_temp = os.path.join(self.build_temp, ext.name.rsplit(".", 1)[-1])
        super(BuildPerExtensionDir, per_extension).build_extension(ext)


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildPerExtensionDir.with_options(use_ninja=True)},
)
