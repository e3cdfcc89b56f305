"""Files → features: cache lookup, background decoding, batched forward on the device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from t2ibench.metrics import images as im
from t2ibench.metrics.cache import FeatureCache, hash_files
from t2ibench.metrics.networks import Extractor


def default_workers(device: torch.device) -> int:
    """Decoding processes: none when the network itself runs on the CPU (workers would steal its
    cores, and decoding is cheap next to a CPU forward), else up to 4."""
    if device.type == "cpu":
        return 0
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def resolve_device(device: str) -> str:
    """``auto`` → cuda when available, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class _Files(Dataset):
    def __init__(self, paths: list[Path], preprocess: Callable):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(im.load_rgb(self.paths[i]))


def batches(paths: list[Path], preprocess: Callable, batch_size: int, num_workers: int) -> DataLoader:
    """Decoded, preprocessed batches; decoding runs in ``num_workers`` background processes."""
    return DataLoader(_Files(paths, preprocess), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, persistent_workers=False,
                      prefetch_factor=4 if num_workers else None, pin_memory=torch.cuda.is_available())


def extract(paths: list[Path], extractor: Extractor, cache: FeatureCache | None = None, *,
            batch_size: int = 50, num_workers: int | None = None,
            progress: Callable[[str], None] | None = None) -> np.ndarray:
    """(N, d) float32 features of ``paths`` in order; only uncached images are decoded and run."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no images to extract features from")
    cache = cache or FeatureCache(None)
    hashes = hash_files(paths)
    found = cache.get(extractor.key, hashes)
    todo = [i for i, h in enumerate(hashes) if h not in found]
    todo = list({hashes[i]: i for i in todo}.values())  # one decode per distinct content
    if todo:
        if progress:
            progress(f"{extractor.key.split('|')[0]}: {len(todo)} images ({len(paths) - len(todo)} cached)")
        workers = default_workers(extractor.device) if num_workers is None else num_workers
        new: dict[str, np.ndarray] = {}
        start = 0
        for batch in batches([paths[i] for i in todo], extractor.preprocess, batch_size, min(workers, len(todo))):
            feats = extractor.forward(batch)
            new.update((hashes[todo[start + j]], f) for j, f in enumerate(feats))
            start += len(feats)
        cache.put(extractor.key, new)
        found.update(new)
    return np.stack([found[h] for h in hashes])
