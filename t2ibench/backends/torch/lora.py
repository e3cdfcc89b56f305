"""The ``lora`` knob: LoRA adapters loaded, activated (and optionally fused) per config through
diffusers' pipeline LoRA API, then removed so that the next config runs the exact base weights.

``source`` is a hub id (``weight_name`` picks the file), a local ``.safetensors`` file, or
``random:<name>``: a deterministic random adapter over the denoiser's attention projections (for tests
and latency measurement). The adapter files are read once per loaded model and kept as state dicts.

Fusing changes the base weights in place, and unfusing subtracts the delta again, which leaves float
rounding residue; so the base weights of the adapted layers are copied (to the CPU) before fusing and
copied back exactly after ``unfuse_lora`` / ``unload_lora_weights``.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from t2ibench.errors import SkipConfig, UserError

MIXED_FUSE = ("lora: fuse must be the same for every adapter of a config (once one adapter is fused, peft runs "
              "the base layer only and ignores the unfused ones)")
RANDOM_RANK = 4
RANDOM_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def random_lora(name: str, denoiser, prefix: str, rank: int = RANDOM_RANK) -> dict:
    """A deterministic random LoRA (peft format, ``<prefix>.<module>.lora_A/B.weight``) over the
    denoiser's attention projections; seeded by ``name``, non-zero B so that it changes the output."""
    import torch

    gen = torch.Generator("cpu").manual_seed(zlib.crc32(name.encode()))
    state = {}
    for module_name, module in denoiser.named_modules():
        if not isinstance(module, torch.nn.Linear) or not module_name.endswith(tuple("." + t for t in RANDOM_TARGETS)):
            continue
        a = torch.randn(rank, module.in_features, generator=gen) / module.in_features ** 0.5
        b = torch.randn(module.out_features, rank, generator=gen) * 0.1
        state[f"{prefix}.{module_name}.lora_A.weight"] = a
        state[f"{prefix}.{module_name}.lora_B.weight"] = b
    if not state:
        raise SkipConfig(f"lora 'random:{name}': {type(denoiser).__name__} has no attention projections "
                         f"({', '.join(RANDOM_TARGETS)})")
    return state


def _read_file(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(path, device="cpu")


LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE


def is_file_source(source: str) -> bool:
    """A local file (or folder) rather than a hub id or ``random:<name>``."""
    return not source.startswith("random:") and (
        source.endswith(".safetensors") or source.startswith((".", "/", "~")) or Path(source).expanduser().exists())


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def _not_cached(repo: str, filename: str) -> str:
    why = "HF_HUB_OFFLINE is set" if _offline() else "it could not be downloaded"
    return (f"lora '{repo}' ({filename}) is not in the Hugging Face cache and {why}; fetch it with "
            f"`hf download {repo} {filename}` on a connected machine, or give a local .safetensors file")


def source_problem(adapter) -> str | None:
    """Why the adapter's file cannot be read, told without reading it: a local file that does not exist, or a
    hub file that is not in the Hugging Face cache while offline; None when it can be read (or downloaded)."""
    source = adapter.source
    if source.startswith("random:"):
        return None
    if is_file_source(source):
        path = Path(source).expanduser()
        if path.is_dir() and adapter.weight_name:
            path = path / adapter.weight_name
        return None if path.is_file() else f"lora file '{source}' does not exist"
    if not _offline():
        return None  # downloaded when the config runs
    from huggingface_hub import try_to_load_from_cache

    filename = adapter.weight_name or LORA_WEIGHT_NAME
    try:
        cached = try_to_load_from_cache(source, filename)
    except ValueError:  # not a valid repo id: the download would fail the same way
        cached = None
    return None if isinstance(cached, str) else _not_cached(source, filename)


def _hub_file(repo: str, weight_name: str | None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    filename = weight_name or LORA_WEIGHT_NAME
    try:
        return hf_hub_download(repo, filename)
    except LocalEntryNotFoundError as e:  # a subclass of EntryNotFoundError: not cached, and offline
        cause: Exception = e
    except EntryNotFoundError as e:
        raise UserError(f"lora '{repo}' has no file '{filename}'; name the file with lora weight_name") from e
    except (RepositoryNotFoundError, OSError) as e:
        cause = e
    raise UserError(_not_cached(repo, filename)) from cause


class LoraManager:
    """Loads a config's adapters onto one pipeline and removes them; caches the state dicts per source."""

    def __init__(self, pipe, denoiser_attr: str):
        self.pipe = pipe
        self.denoiser_attr = denoiser_attr
        self._state_dicts: dict[tuple, dict] = {}
        self._names: list[str] = []
        self._fused = False
        self._snapshot: dict[tuple[str, str], tuple[Any, Any]] = {}

    def state_dict(self, adapter) -> dict:
        key = (adapter.source, adapter.weight_name)
        if key not in self._state_dicts:
            source = adapter.source
            if source.startswith("random:"):
                denoiser = getattr(self.pipe, self.denoiser_attr)
                self._state_dicts[key] = random_lora(source.removeprefix("random:"), denoiser, self.denoiser_attr)
            elif is_file_source(source):
                problem = source_problem(adapter)
                if problem:
                    raise UserError(problem)
                path = Path(source).expanduser()
                self._state_dicts[key] = _read_file(str(path / adapter.weight_name if path.is_dir() else path))
            else:
                self._state_dicts[key] = _read_file(_hub_file(source, adapter.weight_name))
        return self._state_dicts[key]

    def apply(self, adapters) -> list[dict]:
        """Load and activate ``adapters`` (fusing them when they say so); returns what was observed."""
        pipe = self.pipe
        if not hasattr(pipe, "load_lora_weights"):
            raise SkipConfig(f"lora: {type(pipe).__name__} has no LoRA support in diffusers")
        fuse = {a.fuse for a in adapters}
        if len(fuse) > 1:
            raise SkipConfig(MIXED_FUSE)
        states = [self.state_dict(a) for a in adapters]  # UserError for a missing file before anything changes
        names = [f"t2ibench_{i}" for i in range(len(adapters))]
        try:
            for name, state in zip(names, states):
                pipe.load_lora_weights(dict(state), adapter_name=name)  # it pops keys: a shallow copy
                self._names.append(name)
            pipe.set_adapters(names, adapter_weights=[a.scale for a in adapters])
            if fuse == {True}:
                self._snapshot_base_weights()
                pipe.fuse_lora(adapter_names=names, lora_scale=1.0)  # the scales are set_adapters' weights
                self._fused = True
        except (ValueError, KeyError, RuntimeError) as e:
            self.remove()
            raise SkipConfig(f"lora: cannot load onto {type(pipe).__name__}: {str(e).splitlines()[0]}") from e
        return self._observe(adapters, names)

    def _lora_layers(self):
        for component, module in self.pipe.components.items():
            if not hasattr(module, "named_modules"):
                continue
            for name, sub in module.named_modules():
                if hasattr(sub, "base_layer") and hasattr(sub, "lora_A"):
                    yield component, name, sub

    def _observe(self, adapters, names) -> list[dict]:
        active = set(self.pipe.get_active_adapters())
        listed = self.pipe.get_list_adapters()
        out = []
        for adapter, name in zip(adapters, names):
            layers = [sub for _, _, sub in self._lora_layers() if name in sub.lora_A]
            merged = [sub for sub in layers if name in getattr(sub, "merged_adapters", [])]
            out.append({"source": adapter.source, "scale": adapter.scale, "adapter": name,
                        "active": name in active, "components": sorted(c for c, n in listed.items() if name in n),
                        "layers": len(layers), "fused": bool(layers) and len(merged) == len(layers)})
        return out

    def _snapshot_base_weights(self) -> None:
        for component, name, sub in self._lora_layers():
            base = sub.base_layer
            bias = getattr(base, "bias", None)
            self._snapshot[(component, name)] = (base.weight.detach().to("cpu", copy=True),
                                                 None if bias is None else bias.detach().to("cpu", copy=True))

    def remove(self) -> None:
        """Unfuse, unload, and put the exact base weights back."""
        import torch

        pipe = self.pipe
        if self._fused:
            pipe.unfuse_lora()
            self._fused = False
        if self._names:
            pipe.unload_lora_weights()
            self._names.clear()
        if self._snapshot:
            with torch.no_grad():
                for (component, name), (weight, bias) in self._snapshot.items():
                    module = pipe.components[component].get_submodule(name)
                    module.weight.copy_(weight)
                    if bias is not None:
                        module.bias.copy_(bias)
            self._snapshot.clear()

    def clear(self) -> None:
        self._state_dicts.clear()
