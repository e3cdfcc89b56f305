"""What the per-image preference metrics share (HPSv2, PickScore, ImageReward, aesthetic): the ``weights:``
option, cached text embeddings and pair scores, and the runner that turns per-image scores into rows.

``weights`` is a local file or folder, a Hugging Face hub id found in the local cache, ``random`` (the real,
full-size architecture with deterministic random weights: for measuring metric cost) or ``random:tiny``
(a narrow model of the same family, for fast tests). Unset: ``$T2IBENCH_WEIGHTS``, the torch hub
checkpoints folder and the Hugging Face cache, then a download unless offline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from t2ibench.base import Frozen
from t2ibench.errors import UserError

if TYPE_CHECKING:
    from t2ibench.metrics.scoring import ImageRecord, ScoringContext

RANDOM, TINY = "random", "random:tiny"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class WeightsOptions(Frozen):
    """``{weights: PATH | HUB_ID | random | random:tiny}``; unset looks in $T2IBENCH_WEIGHTS and the caches."""

    weights: Optional[str] = None


def random_kind(weights: str | None) -> str | None:
    """``"full"`` for ``random``, ``"tiny"`` for ``random:tiny``, None for real weights; other random: is an error."""
    if weights is None or not weights.startswith(RANDOM):
        return None
    if weights == RANDOM:
        return "full"
    if weights == TINY:
        return "tiny"
    raise UserError(f"weights '{weights}': choose random (full size) or random:tiny (a narrow test model)")


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _is_hub_id(text: str) -> bool:
    """``org/name`` that is not a path on disk nor a weights file name."""
    parts = text.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not Path(text).exists()
            and not text.lower().endswith(WEIGHT_SUFFIXES))


def _hf_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename)
    return Path(hit) if isinstance(hit, str) else None


def find_file(what: str, filenames: tuple[str, ...], repo: str, explicit: str | None, source: str) -> Path:
    """A weights file: ``explicit`` (a file, a folder holding one of ``filenames``, or a hub id in the HF
    cache), else ``$T2IBENCH_WEIGHTS``, the torch hub checkpoints, the HF cache of ``repo``, then a download
    from ``repo`` unless offline. Missing: a one-line UserError naming the file and where to get it."""
    from t2ibench.metrics import weights as w

    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for name in filenames:
                if (p / name).is_file():
                    return p / name
            raise UserError(f"{what}: folder '{p}' holds none of {', '.join(filenames)}")
        if _is_hub_id(explicit):
            for name in filenames:
                hit = _hf_cached(explicit, name)
                if hit is not None:
                    return hit
            raise UserError(f"{what}: {filenames[0]} of '{explicit}' is not in the Hugging Face cache; "
                            f"get it with: huggingface-cli download {explicit} {filenames[0]}")
        raise UserError(f"{what} weights file '{p}' does not exist")
    dirs = [d for d in (w.weights_dir(), w.hub_checkpoints()) if d is not None]
    for d in dirs:
        for name in filenames:
            if (d / name).is_file():
                return d / name
    for name in filenames:
        hit = _hf_cached(repo, name)
        if hit is not None:
            return hit
    if not w.offline():
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo, filenames[0]))
        except Exception:  # noqa: BLE001 - any network failure means "not available"
            pass
    where = " or ".join(str(d) for d in dirs) or "$T2IBENCH_WEIGHTS"
    raise UserError(f"{what} weights '{filenames[0]}' not found; get it from {source} and put it in {where} "
                    f"(or pass weights: PATH), or use weights: random for a smoke test")


def find_folder(what: str, repo: str, explicit: str | None, marker: str = "config.json") -> Path:
    """A Hugging Face model folder: ``explicit`` (a folder or a hub id in the cache), else ``repo`` in
    ``$T2IBENCH_WEIGHTS/<name>``, the HF cache, then a download unless offline."""
    from t2ibench.metrics import weights as w

    def snapshot(repo_id: str, local_only: bool) -> Path | None:
        from huggingface_hub import snapshot_download

        try:
            p = Path(snapshot_download(repo_id, local_files_only=local_only))
        except Exception:  # noqa: BLE001 - not cached / no network
            return None
        return p if (p / marker).is_file() else None

    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir():
            if not (p / marker).is_file():
                raise UserError(f"{what}: folder '{p}' has no {marker}")
            return p
        if _is_hub_id(explicit):
            hit = snapshot(explicit, True)
            if hit is None:
                raise UserError(f"{what}: '{explicit}' is not in the Hugging Face cache; "
                                f"get it with: huggingface-cli download {explicit}")
            return hit
        raise UserError(f"{what} weights folder '{p}' does not exist")
    wd = w.weights_dir()
    if wd is not None and (wd / repo.split("/")[-1] / marker).is_file():
        return wd / repo.split("/")[-1]
    hit = snapshot(repo, True) or (None if w.offline() else snapshot(repo, False))
    if hit is None:
        raise UserError(f"{what} weights '{repo}' not found; get them with: huggingface-cli download {repo} "
                        f"(or put the folder in $T2IBENCH_WEIGHTS/{repo.split('/')[-1]}), "
                        "or use weights: random for a smoke test")
    return hit


def identity(path: Path | None, kind: str | None) -> str:
    """The weights part of a cache key: a content hash of the file (or a folder's weight files), or the seed."""
    from t2ibench.metrics import weights as w
    from t2ibench.metrics.networks import RANDOM_SEED

    if path is None:
        return f"random{'-tiny' if kind == 'tiny' else ''}{RANDOM_SEED}"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
        return hashlib.sha256("".join(w.file_identity(p.resolve()) for p in files).encode()).hexdigest()[:16]
    return w.file_identity(path)


def clip_transform(size: int = 224) -> Callable:
    """CLIP's evaluation transform: PIL bicubic resize of the short side, centre crop, [0,1], CLIP mean/std."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                      T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


def _text_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def cached_text(key: str, prompts: list[str], encode: Callable[[list[str]], np.ndarray], cache: Any) -> dict:
    """prompt → embedding, encoding only the prompts not in the feature cache (under ``text|<key>``)."""
    prompts = list(dict.fromkeys(prompts))
    keys = {p: _text_key(p) for p in prompts}
    net = f"text|{key}"
    found = cache.get(net, list(keys.values())) if cache is not None else {}
    todo = [p for p in prompts if keys[p] not in found]
    if todo:
        new = {keys[p]: np.asarray(v, np.float32) for p, v in zip(todo, encode(todo))}
        if cache is not None:
            cache.put(net, new)
        found.update(new)
    return {p: found[keys[p]] for p in prompts}


def cached_pairs(key: str, recs: list["ImageRecord"], preprocess: Callable,
                 score: Callable[[Any, list[str]], np.ndarray], ctx: "ScoringContext") -> np.ndarray:
    """Per-image scores of (image, prompt) pairs, cached under ``key`` by image content and prompt: a model
    whose image features depend on the prompt (ImageReward) caches its final score instead of features."""
    from t2ibench.metrics.cache import hash_files
    from t2ibench.metrics.features import batches, default_workers

    hashes = hash_files([r.path for r in recs])
    pair = [hashlib.sha256(f"{h}\n{r.prompt}".encode("utf-8")).hexdigest() for h, r in zip(hashes, recs)]
    found = ctx.cache.get(key, pair) if ctx.cache is not None else {}
    todo = list({pair[i]: i for i in range(len(recs)) if pair[i] not in found}.values())
    if todo:
        if ctx.progress:
            ctx.progress(f"{key.split('|')[0]}: {len(todo)} images ({len(recs) - len(todo)} cached)")
        import torch

        workers = default_workers(torch.device(ctx.device)) if ctx.num_workers is None else ctx.num_workers
        new: dict[str, np.ndarray] = {}
        problems: list[str] = []
        start = 0
        for batch, ok, bad in batches([recs[i].path for i in todo], preprocess, ctx.batch_size,
                                      min(workers, len(todo))):
            problems += bad
            if batch is not None:
                idx = [todo[start + j] for j in ok]
                values = score(batch, [recs[i].prompt for i in idx])
                new.update((pair[i], np.asarray([v], np.float32)) for i, v in zip(idx, values))
            start += len(ok) + len(bad)
        if ctx.cache is not None:
            ctx.cache.put(key, new)
        if problems:
            raise UserError(problems[0], problems=problems)
        found.update(new)
    return np.array([float(found[p][0]) for p in pair], np.float64)


@dataclass
class PerImage:
    """A loaded preference model: ``scores(recs, ctx)`` → one value per image record."""

    key: str
    random_weights: bool
    scores: Callable[[list["ImageRecord"], "ScoringContext"], np.ndarray]


def run_per_image(metric: str, model: PerImage, ctx: "ScoringContext") -> list:
    """Mean score per config, a prompt-jackknife CI of the mean, and per-image values for paired compare."""
    from t2ibench.metrics import bootstrap as bs
    from t2ibench.metrics.scoring import per_image, result

    out = []
    for cfg, recs in ctx.configs.items():
        s = model.scores(recs, ctx)
        ci = bs.mean_ci(s, [r.prompt_id for r in recs], seed=ctx.seed) if ctx.ci else None
        out.append(result(cfg, metric, s.mean(), ci, model.random_weights, len(s), std=float(s.std()),
                          per_image=per_image(recs, s)))
    return out


def seeded(build: Callable[[], Any]) -> Any:
    """``build()`` under torch seed 0 without touching the caller's RNG state (deterministic random weights)."""
    from t2ibench.metrics.networks import _seeded

    return _seeded(build)


def network_checks(label: str, weights: str | None, find: Callable[[], Any]) -> list:
    """doctor's check of a metric's default weights (none for random weights)."""
    from t2ibench.metrics.registry import NetworkCheck

    if weights is not None and weights.startswith(RANDOM):
        return []
    return [NetworkCheck(label, lambda: str(find()))]


def tiny_open_clip(embed_dim: int = 32) -> Any:
    """A narrow open_clip CLIP (2 layers of width 32 per tower, 224² input in 32² patches, CLIP's vocabulary)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=32, image_size=224)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)
    return seeded(lambda: CLIP(embed_dim, vision, text)).eval()


def load_matching(module: Any, state: dict, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; missing or misshapen tensors are a UserError naming the first few."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not any(k.endswith(i) for i in ignore)]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        detail = (f"missing {', '.join(missing[:3])}" if missing else
                  f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise UserError(f"{what}: not the expected checkpoint ({detail}"
                        f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''})")
    module.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
