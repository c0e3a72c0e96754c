"""Where training and evaluation run, and in what numerics: the device (`pick_device`), what a worker sets up on
its device before anything runs there (`use_device`: the current CUDA device, the precision flags, determinism),
the precision a run really computes in (`precision`, tag `mmtrack.precision`), and the one-line diagnosis of a GPU
that the NVIDIA driver sees but torch cannot use (`gpu_diagnosis`).

On CUDA (README "On a GPU"):
- `MMTRACK_PRECISION=fp32` (the default) is true fp32: TF32 is switched off for convolutions and matmuls (PyTorch's
  own default computes convolutions in TF32); `tf32` allows TF32 and is tagged so; `bf16` trains under bfloat16
  autocast. On CPU every run computes in fp32.
- `MMTRACK_DETERMINISTIC=1` asks PyTorch for deterministic algorithms (`torch.use_deterministic_algorithms`),
  deterministic cuDNN without benchmarking, and the cuBLAS workspace setting that makes its matmuls repeatable;
  otherwise cuDNN benchmarks its convolution algorithms (faster, not bit-repeatable).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
from pathlib import Path

import torch

from mmtrack import settings
from mmtrack.errors import MMTrackError

DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
CUDA13_DRIVER = 580  # the oldest NVIDIA driver the CUDA 13 build of torch runs on


def pick_device() -> torch.device:
    """CUDA when present, else CPU; MMTRACK_DEVICE overrides (e.g. `cpu`)."""
    name = settings.device_name()
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_device(device: torch.device | str | None) -> torch.device:
    """Set up this process for `device` (None: `pick_device()`) and return it: on CUDA the current device becomes
    it (ART, `torch.cuda.empty_cache` and new tensors without a device all use the current device), TF32 follows
    the precision, and cuDNN benchmarks unless determinism is asked for; determinism applies on any device."""
    device = torch.device(device) if device is not None else pick_device()
    if settings.deterministic():
        settings.set_cublas_workspace()  # before cuBLAS starts: repeatable matmuls
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        tf32 = settings.precision() == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.deterministic = settings.deterministic()
        torch.backends.cudnn.benchmark = not settings.deterministic()
    return device


def precision(device: torch.device) -> str:
    """What training on `device` computes in: on CUDA `bf16` (autocast) when $MMTRACK_PRECISION is `bf16`, `tf32`
    when cuDNN may use TF32 for convolutions (PyTorch's default, or $MMTRACK_PRECISION=tf32), else `fp32`; on
    CPU always `fp32`."""
    if device.type != "cuda":
        return "fp32"
    if settings.precision() == "bf16":
        return "bf16"
    return "tf32" if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32 else "fp32"


def precision_context(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision(device) == "bf16")


def art_device(device: torch.device):
    """The context ART's classifier must be built in: ART moves the model to `cuda:<current device>`, so the
    current device must be the model's (a worker on cuda:1 would otherwise attack on cuda:0)."""
    if device.type == "cuda" and device.index is not None:
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version when a driver is loaded on this machine (None: no NVIDIA GPU/driver)."""
    try:
        text = DRIVER_VERSION_FILE.read_text()
    except OSError:
        text = ""
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return first or None


@functools.cache
def gpu_diagnosis() -> str | None:
    """One line when the NVIDIA driver sees a GPU but torch cannot use it (training would silently run on the
    CPU), naming the driver requirement; None when torch uses the GPU or there is none."""
    if torch.cuda.is_available():
        return None
    driver = nvidia_driver()
    if driver is None:
        return None
    built = torch.version.cuda or "none (a CPU-only build)"
    major = driver.split(".")[0]
    needs = (
        f"torch {torch.__version__} is built for CUDA {built}, which needs NVIDIA driver >= {CUDA13_DRIVER}"
        if (torch.version.cuda or "").startswith("13")
        else f"torch {torch.__version__} is built for CUDA {built}"
    )
    old = major.isdigit() and int(major) < CUDA13_DRIVER and (torch.version.cuda or "").startswith("13")
    return (
        f"an NVIDIA GPU is visible to the driver ({driver}) but not to torch: {needs}"
        + (
            "; update the driver, or install a torch built for an older CUDA (make setup TORCH_INDEX=...)"
            if old
            else ""
        )
        + "; training runs on the CPU"
    )


def check_devices(names: list[str]) -> None:
    """Each of `names` is a torch device this machine has (one line naming what is wrong otherwise)."""
    for name in names:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise MMTrackError(f"--devices: {name!r} is not a torch device (write e.g. cuda:0,cuda:1 or cpu)") from None
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if (device.index or 0) >= count:
                why = gpu_diagnosis()
                raise MMTrackError(
                    f"--devices: {name} is not available (this machine has {count} CUDA device(s)"
                    + (f"; {why}" if why else "")
                    + "); list the ones `nvidia-smi` shows"
                )
