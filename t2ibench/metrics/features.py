"""Files → features: cache lookup, background decoding, batched forward on the device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from t2ibench.errors import UserError
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


class _Unreadable(str):
    """What a loader worker returns instead of raising for a file it cannot decode: the problem line."""


class _Files(Dataset):
    def __init__(self, paths: list[Path], preprocess: Callable):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | _Unreadable:
        # never raise here: a worker's exception reaches the user as a traceback inside the message
        try:
            return self.preprocess(im.load_rgb(self.paths[i]))
        except UserError as e:
            return _Unreadable(str(e))
        except Exception as e:  # noqa: BLE001 - any failure to decode a user's file is that file's problem
            return _Unreadable(im.unreadable(self.paths[i], e))


def _collate(items: list) -> tuple[torch.Tensor | None, list[int], list[str]]:
    """(stacked decodable images, their positions in the batch, problem lines of the others)."""
    ok = [i for i, x in enumerate(items) if not isinstance(x, _Unreadable)]
    stacked = torch.stack([items[i] for i in ok]) if ok else None
    return stacked, ok, [str(x) for x in items if isinstance(x, _Unreadable)]


def batches(paths: list[Path], preprocess: Callable, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of ``(images, positions, problems)``; decoding runs in ``num_workers`` background processes.

    A file that cannot be decoded does not stop the loader: it is left out of ``images`` and its
    one-line problem is in ``problems`` (see :func:`extract`).
    """
    if num_workers and fork_unsafe_engines():
        num_workers = 0  # decode here: a worker forked from this process would crash
    return DataLoader(_Files(paths, preprocess), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, persistent_workers=False, collate_fn=_collate,
                      prefetch_factor=4 if num_workers else None, pin_memory=torch.cuda.is_available())


def fork_unsafe_engines() -> list[str]:
    """The inference runtimes loaded in this process whose thread pools do not survive a fork (OpenVINO's, and
    onnxruntime's): after a run of the ``openvino`` or ``onnxruntime`` backend, a forked loader worker segfaults.
    Forking stays the default otherwise (a fork server or spawn would need every caller's script guarded by
    ``if __name__ == "__main__"``)."""
    import sys

    return [m for m in ("openvino", "onnxruntime") if m in sys.modules]


def extract(paths: list[Path], extractor: Extractor, cache: FeatureCache | None = None, *,
            batch_size: int = 50, num_workers: int | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> np.ndarray:
    """(N, d) float32 features of ``paths`` in order; only uncached images are decoded and run.

    ``progress(label, done, added)`` is called with ``added`` images to run, then after each batch.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no images to extract features from")
    cache = cache or FeatureCache(None)
    hashes = hash_files(paths)
    found = cache.get(extractor.key, hashes)
    todo = [i for i, h in enumerate(hashes) if h not in found]
    todo = list({hashes[i]: i for i in todo}.values())  # one decode per distinct content
    if todo:
        label = extractor.key.split("|")[0]
        if progress:
            progress(label, 0, len(todo))
        workers = default_workers(extractor.device) if num_workers is None else num_workers
        new: dict[str, np.ndarray] = {}
        problems: list[str] = []
        start = 0
        for batch, ok, bad in batches([paths[i] for i in todo], extractor.preprocess, batch_size,
                                      min(workers, len(todo))):
            problems += bad
            if batch is not None:
                feats = extractor.forward(batch)
                new.update((hashes[todo[start + j]], f) for j, f in zip(ok, feats))
            start += len(ok) + len(bad)
            if progress:
                progress(label, len(ok) + len(bad), 0)
        cache.put(extractor.key, new)  # what was computed is kept, even when some files were unreadable
        if problems:
            raise UserError(problems[0], problems=problems)
        found.update(new)
    return np.stack([found[h] for h in hashes])
