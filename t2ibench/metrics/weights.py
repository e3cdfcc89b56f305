"""Where metric weights come from: explicit path → $T2IBENCH_WEIGHTS → torch/HF caches → download."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
from pathlib import Path

from t2ibench.errors import UserError
from t2ibench.registry import did_you_mean

_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``T2IBENCH_OFFLINE`` forbids downloads."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "T2IBENCH_OFFLINE"))


def weights_dir() -> Path | None:
    d = os.environ.get("T2IBENCH_WEIGHTS")
    return Path(d).expanduser() if d else None


def hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _where_to_put(filename: str) -> str:
    wd = weights_dir()
    return f"$T2IBENCH_WEIGHTS ({wd if wd else 'unset'}) or {hub_checkpoints()}/"


def resolve_file(filename: str, *, what: str, explicit: str | os.PathLike | None = None,
                 url: str | None = None, alternative: str = "") -> Path:
    """Find ``filename`` (a torch-hub style checkpoint) or raise a UserError saying where to put it."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UserError(f"{what} weights file '{p}' does not exist")
        return p
    candidates = [d / filename for d in (weights_dir(), hub_checkpoints()) if d is not None]
    for p in candidates:
        if p.is_file():
            return p
    if url and not offline():
        import torch

        target = hub_checkpoints() / filename
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), progress=False)
            return target
        except Exception:  # any network or disk failure means "not available"
            target.unlink(missing_ok=True)
    raise UserError(f"{what} weights '{filename}' not found; put it in {_where_to_put(filename)}"
                    + (f", or {alternative}" if alternative else ""))


@functools.lru_cache(maxsize=None)
def _sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_identity(path: Path) -> str:
    """Content hash of a weights file (memoised by path, size and mtime), for cache keys."""
    st = path.stat()
    return _sha(str(path.resolve()), st.st_size, st.st_mtime_ns)


def load_state_dict_file(path: Path) -> dict:
    """The tensors of a weights file: ``.safetensors`` (no code at all), or a torch file read with
    ``torch.load(weights_only=True)``, which refuses any pickled object but tensors and plain containers.

    A refused or unreadable file is a UserError; nothing in it runs.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler said no
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f": it asks for the Python object {needs.group(1)}" if needs else ""
        raise UserError(f"refused weights file {path}: not a plain state dict of tensors{what}; "
                        "use a .safetensors file or tensors saved with torch.save") from None
    except Exception as e:  # a truncated, foreign or corrupt file
        lines = str(e).strip().splitlines()
        raise UserError(f"cannot read weights file {path}: {lines[0] if lines else type(e).__name__}") from None


OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def open_clip_models() -> list[str]:
    """open_clip's architectures (``open_clip.list_models()``), read from its ``model_configs`` folder without
    importing it (that import takes seconds: torch, torchvision, timm)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the CLIP metrics need open_clip: pip install open_clip_torch")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model_configs"
    return sorted(p.stem for p in folder.glob("*.json"))


def check_open_clip(model: str, pretrained: str | None = None) -> None:
    """UserError unless ``model`` (``ViT-B-32`` or ``random:ViT-B-32``) is an open_clip architecture, and a
    ``pretrained`` that is written as a path exists; reads no weights (the pretrained tag is checked with
    the weights, by :func:`resolve_open_clip`)."""
    arch = model.removeprefix("random:")
    archs = open_clip_models()
    if arch not in archs:
        shown = [("random:" if model.startswith("random:") else "") + a for a in archs]
        hint = did_you_mean(model, shown) or "; e.g. ViT-B-32, ViT-L-14, ViT-L-14-336 (open_clip.list_models())"
        raise UserError(f"unknown open_clip model '{model}'{hint}")
    if model.startswith("random:") or pretrained is None or Path(pretrained).expanduser().is_file():
        return
    if pretrained.startswith(("./", "../", "/", "~")) or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
        raise UserError(f"open_clip weights file '{pretrained}' does not exist")


def check_name(what: str, name: str, choices: tuple[str, ...]) -> None:
    """UserError unless ``name`` is one of ``choices`` (with did-you-mean)."""
    if name not in choices:
        hint = did_you_mean(name, list(choices))
        raise UserError(f"unknown {what} '{name}'{hint or ''}; choose one of: {', '.join(choices)}")


def random_weights() -> str:
    return "random weights (no file)"


def resolve_open_clip(arch: str, pretrained: str) -> tuple[Path, bool]:
    """(weights file, quick_gelu) for an open_clip ``arch``/``pretrained`` pair.

    ``pretrained`` may be a path. Otherwise looks for ``$T2IBENCH_WEIGHTS/<arch>-<pretrained>.{safetensors,bin}``,
    then the Hugging Face cache, then downloads through open_clip unless offline.
    """
    import open_clip

    if Path(pretrained).expanduser().is_file():
        return Path(pretrained).expanduser(), False
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UserError(f"open_clip has no pretrained '{pretrained}' for '{arch}'{did_you_mean(pretrained, tags)}; "
                        f"choose one of: {', '.join(tags) or '(none)'}")
    quick_gelu = bool(cfg.get("quick_gelu", False))
    stem = f"{arch}-{pretrained}"
    wd = weights_dir()
    if wd is not None:
        for ext in (".safetensors", ".bin"):
            if (wd / (stem + ext)).is_file():
                return wd / (stem + ext), quick_gelu
    repo = cfg.get("hf_hub", "").strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for name in OPEN_CLIP_FILES:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return Path(hit), quick_gelu
    if not offline():
        try:
            return Path(open_clip.download_pretrained(cfg)), quick_gelu
        except Exception:  # any network failure means "not available"
            pass
    raise UserError(f"open_clip weights for {arch}/{pretrained} not found; put them in $T2IBENCH_WEIGHTS/{stem}.safetensors "
                    f"({wd if wd else 'unset'}) or the Hugging Face cache ({repo}), "
                    f"or use model: random:{arch} for a smoke test")
