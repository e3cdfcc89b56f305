"""The environment a run was measured in: hardware, driver, library versions, git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path


def resolve_device(device: str) -> str:
    """``auto`` → cuda when available, else cpu; a cuda device without CUDA, or another word, is a user error."""
    import torch

    from t2ibench.errors import UserError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:N], got '{device}'")
    return device


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(path: Path) -> str | None:
    """HEAD's hash, with ``-dirty`` when tracked files differ from it (the code measured is not that commit)."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        status = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if status.returncode == 0 and status.stdout.strip() else "")


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_environment(device: str) -> dict:
    import os

    import torch

    import t2ibench

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    env = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_mb": torch.cuda.get_device_properties(0).total_memory / 2**20 if cuda else None,
        "driver": _nvidia_driver() if cuda else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "t2ibench": t2ibench.__version__,
        "git_commit": _git_commit(Path.cwd()),
        "t2ibench_git_commit": _git_commit(Path(t2ibench.__file__).resolve().parent),
    }
    return env
