"""``t2ibench score …``: metrics on plain image folders or .npz statistics (like pytorch-fid's CLI)."""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from t2ibench.errors import UserError

RANDOM_LABEL = "not meaningful (random weights)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--num-workers", type=int, default=None, help="image decoding processes")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder (default: no cache)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _inception_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", default="inception", help="inception | random:inception")
    p.add_argument("--resize", default="bilinear", choices=["bilinear", "clean"])
    p.add_argument("--weights", default=None, help="path to pt_inception-2015-12-05-6726825d.pth")


def _clip_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model", default=default, help="open_clip architecture or random:<arch>")
    p.add_argument("--pretrained", default="openai", help="open_clip pretrained tag or a weights file")


def add_score_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``score`` and its sub-verbs; each sets ``func`` to a handler returning an exit code."""
    score = subparsers.add_parser("score", help="FID/KID/CMMD/CLIP/LPIPS on image folders or .npz stats")
    verbs = score.add_subparsers(dest="score_verb", required=True, metavar="METRIC")

    p = verbs.add_parser("fid", help="Fréchet Inception Distance between two folders or .npz files")
    p.add_argument("a"), p.add_argument("b")
    _inception_args(p), _common(p)
    p.set_defaults(func=_fid)

    p = verbs.add_parser("kid", help="Kernel Inception Distance (mean ± std over subsets)")
    p.add_argument("a"), p.add_argument("b")
    _inception_args(p), _common(p)
    p.add_argument("--subsets", type=int, default=100)
    p.add_argument("--subset-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_kid)

    p = verbs.add_parser("cmmd", help="CLIP-embedding MMD between two folders")
    p.add_argument("a"), p.add_argument("b")
    _clip_args(p, "ViT-L-14-336"), _common(p)
    p.set_defaults(func=_cmmd)

    p = verbs.add_parser("clip", help="CLIP score of a folder against its prompts")
    p.add_argument("dir")
    p.add_argument("--prompts", required=True, type=Path,
                   help=".txt (one prompt per line, in sorted file-name order) or .jsonl/.csv with file,prompt")
    _clip_args(p, "ViT-B-32"), _common(p)
    p.set_defaults(func=_clip)

    p = verbs.add_parser("lpips", help="mean LPIPS between same-named images of two folders")
    p.add_argument("a"), p.add_argument("b")
    p.add_argument("--net", default="alex", help="alex | vgg | squeeze | random:<net>")
    _common(p)
    p.set_defaults(func=_lpips)

    p = verbs.add_parser("stats", help="save pytorch-fid compatible mu/sigma of a folder")
    p.add_argument("dir")
    p.add_argument("-o", "--output", required=True, type=Path)
    _inception_args(p), _common(p)
    p.set_defaults(func=_stats)
    return score


def _cache(args: argparse.Namespace):
    from t2ibench.metrics.cache import FeatureCache

    return FeatureCache(args.cache_dir)


def _extract(args: argparse.Namespace, ext, folder: str) -> np.ndarray:
    from t2ibench.metrics.features import extract, resolve_device
    from t2ibench.metrics.images import list_images

    ext.to(resolve_device(args.device))
    return extract(list_images(folder), ext, _cache(args), batch_size=args.batch_size,
                   num_workers=args.num_workers)


def _inception(args: argparse.Namespace):
    from t2ibench.metrics.networks import load_features

    return load_features(args.features, args.resize, args.weights)


def _no_npz(*paths: str) -> None:
    for p in paths:
        if p.lower().endswith(".npz"):
            raise UserError(f"{p}: an .npz holds only FID statistics; this metric needs a folder of images")


def _emit(args: argparse.Namespace, metric: str, value: float, random: bool, notes: list[str] | None = None,
          **extra: Any) -> int:
    notes = notes or []
    if args.json:
        print(json.dumps({"metric": metric, "value": value, "random_weights": random, **extra, "notes": notes}))
    else:
        shown = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
        print(f"{metric.upper()}: {value:.6f}" + (f"  ({shown})" if shown else "")
              + (f"  [{RANDOM_LABEL}]" if random else ""))
        for n in notes:
            print(f"note: {n}")
    return 0


def _stats_of(args: argparse.Namespace, ext, path: str):
    from t2ibench.metrics.fid import FID, load_stats

    if path.lower().endswith(".npz"):
        if not Path(path).is_file():
            raise UserError(f"{path}: no such file")
        return load_stats(path), None
    f = FID()
    f.update(_extract(args, ext, path))
    return f.stats(), f.n


def _fid(args: argparse.Namespace) -> int:
    from t2ibench.metrics.fid import MIN_UNBIASED_N, bias_note, frechet_distance

    needs_net = not (args.a.lower().endswith(".npz") and args.b.lower().endswith(".npz"))
    ext = _inception(args) if needs_net else None
    (s1, n1), (s2, n2) = _stats_of(args, ext, args.a), _stats_of(args, ext, args.b)
    notes = [bias_note(n) for n in {n for n in (n1, n2) if n is not None and n < MIN_UNBIASED_N}]
    value = frechet_distance(*s1, *s2)
    return _emit(args, "fid", value, bool(ext and ext.random_weights), notes, n_a=n1, n_b=n2)


def _kid(args: argparse.Namespace) -> int:
    from t2ibench.metrics.kid import kid

    _no_npz(args.a, args.b)
    ext = _inception(args)
    x, y = _extract(args, ext, args.a), _extract(args, ext, args.b)
    mean, std = kid(x.astype(np.float64), y.astype(np.float64), args.subsets, args.subset_size, seed=args.seed)
    return _emit(args, "kid", mean, ext.random_weights, kid_std=std, n_a=len(x), n_b=len(y))


def _cmmd(args: argparse.Namespace) -> int:
    from t2ibench.metrics.cmmd import cmmd
    from t2ibench.metrics.networks import load_clip

    _no_npz(args.a, args.b)
    ext = load_clip(args.model, args.pretrained).image
    x, y = _extract(args, ext, args.a), _extract(args, ext, args.b)
    return _emit(args, "cmmd", cmmd(x, y), ext.random_weights, n_a=len(x), n_b=len(y))


def read_prompts(prompts: Path, files: list[Path]) -> list[str]:
    """Prompt of each file: a .txt line per file (sorted names), or .jsonl/.csv rows of file,prompt."""
    if not prompts.is_file():
        raise UserError(f"{prompts}: no such prompts file")
    suffix = prompts.suffix.lower()
    if suffix == ".txt":
        lines = [ln for ln in prompts.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(lines) != len(files):
            raise UserError(f"{prompts}: {len(lines)} prompts for {len(files)} images (one line per image, "
                            "in sorted file-name order)")
        return lines
    if suffix == ".jsonl":
        rows = [json.loads(ln) for ln in prompts.read_text(encoding="utf-8").splitlines() if ln.strip()]
    elif suffix == ".csv":
        with prompts.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        raise UserError(f"{prompts}: prompts must be .txt, .jsonl or .csv")
    try:
        by_name = {Path(r["file"]).name: r["prompt"] for r in rows}
    except (KeyError, TypeError):
        raise UserError(f"{prompts}: each row needs 'file' and 'prompt'") from None
    missing = [f.name for f in files if f.name not in by_name]
    if missing:
        raise UserError(f"{prompts}: no prompt for {len(missing)} images, e.g. {missing[0]}")
    return [by_name[f.name] for f in files]


def _clip(args: argparse.Namespace) -> int:
    from t2ibench.metrics.clipscore import clip_score
    from t2ibench.metrics.features import resolve_device
    from t2ibench.metrics.images import list_images
    from t2ibench.metrics.networks import load_clip

    files = list_images(args.dir)
    prompts = read_prompts(args.prompts, files)
    s = clip_score(files, prompts, args.model, args.pretrained, resolve_device(args.device), _cache(args),
                   args.batch_size, args.num_workers)
    random = load_clip(args.model, args.pretrained).image.random_weights
    return _emit(args, "clip_score", float(s.mean()), random, std=float(s.std()), n=len(s))


def _lpips(args: argparse.Namespace) -> int:
    from t2ibench.metrics.features import resolve_device
    from t2ibench.metrics.images import list_images
    from t2ibench.metrics.networks import load_lpips
    from t2ibench.metrics.perceptual import pair_distances

    _no_npz(args.a, args.b)
    b = {p.name: p for p in list_images(args.b)}
    pairs = [(p, b[p.name]) for p in list_images(args.a) if p.name in b]
    if not pairs:
        raise UserError(f"no file names in common between {args.a} and {args.b}")
    net = load_lpips(args.net).to(resolve_device(args.device))
    d = pair_distances(net, pairs, _cache(args))
    return _emit(args, "lpips", float(d.mean()), net.random_weights, std=float(d.std()), n=len(d))


def _stats(args: argparse.Namespace) -> int:
    from t2ibench.metrics.fid import save_stats

    ext = _inception(args)
    (mu, sigma), n = _stats_of(args, ext, args.dir)
    save_stats(args.output, (mu, sigma))
    if not args.json:
        print(f"saved mu/sigma of {n} images to {args.output}" + (f"  [{RANDOM_LABEL}]" if ext.random_weights else ""))
        return 0
    print(json.dumps({"output": str(args.output), "n": n, "random_weights": ext.random_weights}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m t2ibench.metrics.cli score fid A B``) for when no main CLI exists."""
    import sys

    parser = argparse.ArgumentParser(prog="t2ibench")
    add_score_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
