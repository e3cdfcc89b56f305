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


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=_at_least(1), default=50, help="images per forward pass")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--num-workers", type=_at_least(0), default=None, help="image decoding processes")
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
    p.add_argument("--subsets", type=_at_least(1), default=100)
    p.add_argument("--subset-size", type=_at_least(2), default=1000)
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


def _images(problems: list[str], folder: str, metric: str, minimum: int) -> tuple[list[Path], dict]:
    """A folder's images and their (w, h); what is wrong (no folder, too few, unreadable) goes to ``problems``."""
    from t2ibench.metrics.images import image_sizes, list_images
    from t2ibench.metrics.minimums import require

    try:
        files = list_images(folder)
        sizes = image_sizes(files)  # headers only: names every non-image before a network loads
    except UserError as e:
        problems.extend(e.problems)
        return [], {}
    require(problems, folder, metric, len(files), minimum)
    return files, sizes


def _extract(args: argparse.Namespace, ext, *file_lists: list[Path]) -> list[np.ndarray]:
    """Features of each list; the unreadable files of all of them are raised together."""
    from t2ibench.metrics.features import extract, resolve_device
    from t2ibench.metrics.minimums import raise_all

    ext.to(resolve_device(args.device))
    out, problems = [], []
    for files in file_lists:
        try:
            out.append(extract(files, ext, _cache(args), batch_size=args.batch_size, num_workers=args.num_workers))
        except UserError as e:
            problems.extend(e.problems)
    raise_all(problems)
    return out


def _names(paths: list[Path], shown: int = 5) -> str:
    names = [p.name for p in paths]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


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


def _fid_input(problems: list[str], path: str):
    """An .npz's (mu, sigma), or a folder's image files; what is wrong goes to ``problems``."""
    from t2ibench.metrics.fid import MIN_IMAGES, load_stats

    if not path.lower().endswith(".npz"):
        return _images(problems, path, "FID", MIN_IMAGES)[0]
    if not Path(path).is_file():
        problems.append(f"{path}: no such file")
        return None
    try:
        return load_stats(path)
    except UserError as e:
        problems.extend(e.problems)
        return None


def _fid(args: argparse.Namespace) -> int:
    from t2ibench.metrics.fid import FID, MIN_UNBIASED_N, bias_note, check_dims, frechet_distance
    from t2ibench.metrics.minimums import raise_all

    problems: list[str] = []
    inputs = [_fid_input(problems, args.a), _fid_input(problems, args.b)]
    raise_all(problems)
    folders = [i for i in inputs if isinstance(i, list)]
    ext = _inception(args) if folders else None
    feats = iter(_extract(args, ext, *folders))
    stats, ns = [], []
    for i in inputs:
        if isinstance(i, list):
            f = FID()
            f.update(next(feats))
            stats.append(f.stats()), ns.append(f.n)
        else:
            stats.append(i), ns.append(None)
    check_dims(args.a, len(stats[0][0]), args.b, len(stats[1][0]))
    notes = [bias_note(n) for n in sorted({n for n in ns if n is not None and n < MIN_UNBIASED_N})]
    value = frechet_distance(*stats[0], *stats[1])
    return _emit(args, "fid", value, bool(ext and ext.random_weights), notes, n_a=ns[0], n_b=ns[1])


def _two_folders(args: argparse.Namespace, metric: str, minimum: int) -> tuple[list[Path], list[Path]]:
    from t2ibench.metrics.minimums import raise_all

    _no_npz(args.a, args.b)
    problems: list[str] = []
    a, b = _images(problems, args.a, metric, minimum)[0], _images(problems, args.b, metric, minimum)[0]
    raise_all(problems)
    return a, b


def _kid(args: argparse.Namespace) -> int:
    from t2ibench.metrics.kid import MIN_IMAGES, kid, negative_note, subset_note

    a, b = _two_folders(args, "KID", MIN_IMAGES)
    ext = _inception(args)
    x, y = (f.astype(np.float64) for f in _extract(args, ext, a, b))
    mean, std = kid(x, y, args.subsets, args.subset_size, seed=args.seed)
    notes = [n for n in (subset_note(args.subset_size, len(x), len(y)), negative_note(mean)) if n]
    return _emit(args, "kid", mean, ext.random_weights, notes, kid_std=std, n_a=len(x), n_b=len(y))


def _cmmd(args: argparse.Namespace) -> int:
    from t2ibench.metrics.cmmd import MIN_IMAGES, cmmd
    from t2ibench.metrics.networks import load_clip

    a, b = _two_folders(args, "CMMD", MIN_IMAGES)
    ext = load_clip(args.model, args.pretrained).image
    x, y = _extract(args, ext, a, b)
    return _emit(args, "cmmd", cmmd(x, y), ext.random_weights, n_a=len(x), n_b=len(y))


def read_prompts(prompts: Path, files: list[Path]) -> list[str]:
    """Prompt of each file: a .txt line per file (sorted names), or .jsonl/.csv rows of file,prompt."""
    if not prompts.is_file():
        raise UserError(f"{prompts}: no such prompts file")
    suffix = prompts.suffix.lower()
    try:
        text = prompts.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{prompts}: cannot read prompts ({e})") from None
    if suffix == ".txt":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) != len(files):
            raise UserError(f"{prompts}: {len(lines)} prompts for {len(files)} images (one line per image, "
                            "in sorted file-name order)")
        return lines
    if suffix == ".jsonl":
        rows = []
        for number, ln in enumerate(text.splitlines(), 1):
            if ln.strip():
                try:
                    rows.append(json.loads(ln))
                except ValueError as e:
                    raise UserError(f"{prompts}:{number}: not a JSON object ({e})") from None
    elif suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
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
    from t2ibench.metrics.clipscore import MIN_IMAGES, clip_score
    from t2ibench.metrics.features import resolve_device
    from t2ibench.metrics.minimums import raise_all
    from t2ibench.metrics.networks import load_clip

    problems: list[str] = []
    files = _images(problems, args.dir, "CLIP score", MIN_IMAGES)[0]
    raise_all(problems)
    prompts = read_prompts(args.prompts, files)
    s = clip_score(files, prompts, args.model, args.pretrained, resolve_device(args.device), _cache(args),
                   args.batch_size, args.num_workers)
    random = load_clip(args.model, args.pretrained).image.random_weights
    return _emit(args, "clip_score", float(s.mean()), random, std=float(s.std()), n=len(s))


def _lpips(args: argparse.Namespace) -> int:
    """Pairs are same-named files; every file must have its partner. A pair of different sizes is
    compared at the second image's size (the first is resized), and a note says so."""
    from t2ibench.metrics.features import resolve_device
    from t2ibench.metrics.minimums import raise_all
    from t2ibench.metrics.networks import load_lpips
    from t2ibench.metrics.perceptual import MIN_PAIRS, pair_distances, resize_note, too_small

    _no_npz(args.a, args.b)
    problems: list[str] = []
    (fa, sa), (fb, sb) = _images(problems, args.a, "LPIPS", MIN_PAIRS), _images(problems, args.b, "LPIPS", MIN_PAIRS)
    if fa and fb:
        names_a, names_b = {p.name for p in fa}, {p.name for p in fb}
        for folder, files, other, names in ((args.a, fa, args.b, names_b), (args.b, fb, args.a, names_a)):
            alone = [p for p in files if p.name not in names]
            if alone:
                problems.append(f"{folder}: {len(alone)} images have no same-named image in {other} "
                                f"(LPIPS pairs files by name): {_names(alone)}")
    raise_all(problems)
    by_name = {p.name: p for p in fb}
    pairs = [(p, by_name[p.name]) for p in fa]
    net = load_lpips(args.net).to(resolve_device(args.device))
    small, side = too_small(net, sb)  # pairs are compared at the second image's size
    if small:
        w, h = sb[small[0]]
        raise UserError(f"{args.b}: {len(small)} images are smaller than the {side}×{side} pixels LPIPS "
                        f"'{args.net}' needs (pairs are compared at this folder's sizes): {_names(small)}; "
                        f"{small[0].name} is {w}×{h}")
    sizes = {**sa, **sb}
    d = pair_distances(net, pairs, _cache(args))
    notes = [n for n in (resize_note(pairs, sizes),) if n]
    return _emit(args, "lpips", float(d.mean()), net.random_weights, notes, std=float(d.std()), n=len(d))


def _stats(args: argparse.Namespace) -> int:
    from t2ibench.metrics.fid import FID, MIN_IMAGES, save_stats
    from t2ibench.metrics.minimums import raise_all

    problems: list[str] = []
    files = _images(problems, args.dir, "FID statistics", MIN_IMAGES)[0]
    if not args.output.parent.is_dir():
        problems.append(f"{args.output}: its folder {args.output.parent} does not exist")
    raise_all(problems)
    ext = _inception(args)
    f = FID()
    f.update(_extract(args, ext, files)[0])
    (mu, sigma), n = f.stats(), f.n
    try:
        save_stats(args.output, (mu, sigma))
    except OSError as e:
        raise UserError(f"{args.output}: cannot write statistics ({e.strerror or e})") from None
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
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
