"""``t2ibench score …``: metrics on plain image folders or .npz statistics (like pytorch-fid's CLI)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np

from t2ibench.base import plural
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
    p.add_argument("--batch-size", type=_at_least(1), default=50, metavar="N",
                   help="images per forward pass of the network (default: 50)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the network runs; auto: cuda when a GPU is found, else cpu (default: auto)")
    p.add_argument("--num-workers", type=_at_least(0), default=None, metavar="N",
                   help="processes decoding images; 0: in this process (default: 0 on CPU, else up to 4)")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="folder caching each image's features, so a second score is fast (default: no cache)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _option_flags(p: argparse.ArgumentParser, options: type, metric: str) -> None:
    """One ``--flag`` per field of a metric's options model (except ``against``, given as a folder), described
    by the field's description and its default."""
    for name, field in options.model_fields.items():
        if name == "against":
            continue
        flag = "--" + name.replace("_", "-")
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else None
        kind = field.annotation if field.annotation in (int, float) else None
        text = field.description or f"the '{name}' option of {metric} (as in a suite's metrics: section)"
        if field.default is not None:
            text += f" (default: {field.default})"
        p.add_argument(flag, dest=name, default=field.default, type=kind, choices=choices,
                       metavar=None if choices else ("N" if kind else "VALUE"), help=text.replace("%", "%%"))


def _score_example(name: str, spec) -> str:
    """The ``examples:`` epilog of one ``score`` verb."""
    lines = ["examples:"]
    if spec.against:
        lines.append(f"  t2ibench score {name} images/candidate images/reference")
        if spec.stats_files:
            lines.append(f"  t2ibench score {name} images/candidate ref-stats.npz --cache-dir ~/.cache/t2ibench")
    elif spec.prompts:
        lines.append(f"  t2ibench score {name} images/candidate --prompts prompts.txt")
    else:
        lines.append(f"  t2ibench score {name} images/candidate")
    lines.append(f"  t2ibench score {name} ... --ci --json      # with a 95% confidence interval, as JSON")
    return "\n".join(lines)


SCORE_EPILOG = """examples:
  t2ibench score fid images/a images/b                  # FID between two folders of images
  t2ibench score fid images/a ref-stats.npz             # against pytorch-fid statistics
  t2ibench score clip_score images/a --prompts prompts.txt
  t2ibench score stats images/ref -o ref-stats.npz      # save a folder's FID statistics
"""


def add_score_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``score`` and one sub-verb per registered metric (plus ``stats``); each sets ``func``."""
    from t2ibench.metrics.registry import METRICS

    raw = argparse.RawDescriptionHelpFormatter
    score = subparsers.add_parser("score", help="metrics on image folders or .npz stats: "
                                                + ", ".join(METRICS.names()),
                                  description="Compute a quality metric on plain folders of images (no run needed).",
                                  epilog=SCORE_EPILOG, formatter_class=raw)
    verbs = score.add_subparsers(dest="score_verb", required=True, metavar="METRIC")
    for name, spec in METRICS.items():
        p = verbs.add_parser(name, aliases=list(spec.cli_aliases), help=spec.summary, description=spec.summary,
                             epilog=_score_example(name, spec), formatter_class=raw)
        p.add_argument("a", metavar="IMAGES", help="folder of images to score"
                       + (" (or an .npz of FID statistics)" if spec.stats_files else ""))
        if spec.against:
            p.add_argument("b", metavar="REFERENCE", help="folder of reference images"
                           + (" or an .npz of FID statistics" if spec.stats_files else "")
                           + (" with the same file names" if spec.per_image else ""))
        if spec.prompts:
            p.add_argument("--prompts", required=True, type=Path, metavar="FILE",
                           help="the prompt of each image: a .txt (one line per image, in sorted file-name order) "
                                "or a .jsonl/.csv with file and prompt columns")
        _option_flags(p, spec.options, name)
        p.add_argument("--seed", type=int, default=0, metavar="N",
                       help="seed of the random subsets and of the resampling (default: 0)")
        p.add_argument("--ci", action="store_true", help="also compute a 95%% confidence interval")
        _common(p)
        p.set_defaults(func=lambda args, spec=spec: _score(args, spec))

    p = verbs.add_parser("stats", help="save pytorch-fid compatible mu/sigma of a folder",
                         description="Save the FID statistics (mu, sigma) of a folder of images in pytorch-fid's\n"
                                     ".npz format, to score against later.",
                         epilog="examples:\n  t2ibench score stats images/ref -o ref-stats.npz\n"
                                "  t2ibench score fid images/candidate ref-stats.npz", formatter_class=raw)
    p.add_argument("dir", metavar="IMAGES", help="folder of images")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                   help="the .npz file to write (its folder must exist)")
    p.add_argument("--features", default="inception", metavar="VALUE",
                   help="feature network: inception (FID), dinov2 (FD-DINOv2), or random:inception / random:dinov2 "
                        "(random weights, for tests) "
                        "(default: inception)")
    p.add_argument("--resize", default="bilinear", choices=["bilinear", "clean"],
                   help="resizing to 299×299: bilinear (as pytorch-fid) or clean (PIL bicubic, as clean-fid) "
                        "(default: bilinear)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="path of pt_inception-2015-12-05-6726825d.pth (default: looked up in $T2IBENCH_WEIGHTS, "
                        "then torch hub's checkpoints)")
    _common(p)
    p.set_defaults(func=_stats)
    return score


def _cache(args: argparse.Namespace):
    from t2ibench.metrics.cache import FeatureCache

    return FeatureCache(args.cache_dir)


def _extract(args: argparse.Namespace, ext, files: list[Path]) -> np.ndarray:
    from t2ibench.metrics.features import extract, resolve_device

    ext.to(resolve_device(args.device))
    return extract(files, ext, _cache(args), batch_size=args.batch_size, num_workers=args.num_workers)


# --- bad input: every problem of both sides, one line each, before any network loads ----------

def _raise(problems: list[str]) -> None:
    problems = list(dict.fromkeys(problems))
    if problems:
        raise UserError(problems[0], problems=problems)


def _images(problems: list[str], folder: str, metric: str, minimum: int) -> list[Path]:
    """A folder's images; what is wrong (no folder, too few, not images) goes to ``problems``."""
    from t2ibench.metrics.images import image_sizes, list_images

    try:
        files = list_images(folder)
        image_sizes(files)  # headers only: names every non-image before a network loads
    except UserError as e:
        problems.extend(e.problems)
        return []
    if len(files) < minimum:
        problems.append(f"{folder}: {metric} needs at least {minimum} images, found {len(files)}")
    return files


def _reference(problems: list[str], path: str, spec) -> list[Path]:
    """The second side: a folder's images, or (FID) a statistics file checked for shape."""
    from t2ibench.metrics.fid import load_stats

    if not path.lower().endswith(".npz"):
        return _images(problems, path, spec.label, spec.min_images)
    if not Path(path).is_file():
        problems.append(f"{path}: no such file")
    else:
        try:
            load_stats(path)
        except UserError as e:
            problems.extend(e.problems)
    return []


def _names(paths: list[Path], shown: int = 5) -> str:
    names = [p.name for p in paths]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _unpaired(problems: list[str], a: str, files_a: list[Path], b: str, files_b: list[Path]) -> None:
    """Images are paired by file name: each folder's images without a same-named partner are a problem."""
    for folder, files, other, names in ((a, files_a, b, {p.name for p in files_b}),
                                        (b, files_b, a, {p.name for p in files_a})):
        alone = [p for p in files if p.name not in names]
        if alone:
            have = "has" if len(alone) == 1 else "have"
            problems.append(f"{folder}: {plural(len(alone), 'image')} {have} no same-named image in {other} "
                            f"(images are paired by file name): {_names(alone)}")


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


def _options(args: argparse.Namespace, spec) -> Any:
    from pydantic import ValidationError

    values = {k: getattr(args, k) for k in spec.options.model_fields if k != "against"}
    if spec.against:
        values["against"] = args.b
    try:
        return spec.options.model_validate(values)
    except ValidationError as e:
        problems = [f"{spec.name}: {'.'.join(map(str, err['loc'])) or 'options'}: {err['msg'].removeprefix('Value error, ')}"
                    for err in e.errors()]
        raise UserError(problems[0], problems=problems) from None


def _fid_of_two_stats(args: argparse.Namespace, spec) -> int:
    from t2ibench.metrics import stats_file
    from t2ibench.metrics.fid import check_dims, frechet_distance, load_stats

    problems: list[str] = []
    for p in (args.a, args.b):
        _reference(problems, p, spec)
    _raise(problems)
    (mu1, s1), (mu2, s2) = load_stats(args.a), load_stats(args.b)
    check_dims(args.a, len(mu1), args.b, len(mu2))
    meta_a, meta_b = stats_file.read_provenance(args.a), stats_file.read_provenance(args.b)
    if meta_b is not None:
        stats_file.check(args.a, meta_a, meta_b, args.b)
    notes = [f"{p}: {stats_file.FOREIGN_NOTE}" for p, m in ((args.a, meta_a), (args.b, meta_b)) if m is None]
    counts = {k: m["count"] for k, m in (("n_a", meta_a), ("n_b", meta_b)) if m and "count" in m}
    return _emit(args, spec.name, frechet_distance(mu1, s1, mu2, s2), False, notes, **counts)


def _score(args: argparse.Namespace, spec) -> int:
    """Any registered metric on a folder (against a second folder or .npz): the same evaluation as in a run."""
    from t2ibench.metrics.evaluate import ImageRecord, evaluate

    a = args.a
    if a.lower().endswith(".npz"):
        if not spec.stats_files:
            raise UserError(f"{a}: an .npz holds only FID statistics; this metric needs a folder of images")
        if args.b.lower().endswith(".npz"):
            return _fid_of_two_stats(args, spec)
        args.a, args.b = args.b, a  # FID is symmetric: score the folder against the statistics
    options = _options(args, spec)
    problems: list[str] = []
    files = _images(problems, args.a, spec.label, spec.min_images)
    if spec.against:
        ref_files = _reference(problems, args.b, spec)
        if spec.per_image and files and ref_files:  # a per-image metric against a folder pairs by file name
            _unpaired(problems, args.a, files, args.b, ref_files)
    _raise(problems)
    prompts = read_prompts(args.prompts, files) if spec.prompts else [f.name for f in files]
    if spec.per_image:  # paired with the reference folder by file name
        records = [ImageRecord("a", f.name, prompt, 0, f) for f, prompt in zip(files, prompts)]
    else:  # a set metric's CI resamples independent units: a prompt's seeds together when the names say so
        from t2ibench.metrics.set_scoring import folder_units

        records = [ImageRecord("a", unit, prompt, i, f)
                   for i, (f, prompt, unit) in enumerate(zip(files, prompts, folder_units(files)))]
    rows = evaluate({spec.name: options}, records, None, device=args.device, cache_dir=args.cache_dir,
                    seed=args.seed, batch_size=args.batch_size, num_workers=args.num_workers, ci=args.ci)
    row = next(r for r in rows if r.metric == spec.name)
    notes = [n for n in row.extra.get("notes", []) if n != RANDOM_LABEL]
    if math.isnan(row.value) and notes:  # the metric could not be computed on this input: say why, exit 2
        _raise([f"{spec.name} not computed: {n}" for n in notes])
    extra: dict[str, Any] = {}
    if args.ci:
        extra.update(lo=row.lo, hi=row.hi)
    scalars = {k: v for k, v in row.extra.items() if isinstance(v, (int, float)) and k != "n_ref"}
    if spec.against:
        n_ref = row.extra.get("n_ref")
        sides = dict(n_a=row.n, n_b=n_ref) if a == args.a else dict(n_a=n_ref, n_b=row.n)
        extra.update({k: n for k, n in sides.items() if n is not None})  # an .npz side has no count
    else:
        extra["n"] = row.n
    return _emit(args, spec.name, row.value, row.random_weights, notes, **scalars, **extra)


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
            raise UserError(f"{prompts}: {plural(len(lines), 'prompt')} for {plural(len(files), 'image')} "
                            "(one line per image, in sorted file-name order)")
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
        raise UserError(f"{prompts}: no prompt for {plural(len(missing), 'image')}, e.g. {missing[0]}")
    return [by_name[f.name] for f in files]


def _stats(args: argparse.Namespace) -> int:
    from t2ibench.metrics import stats_file
    from t2ibench.metrics.fid import FID, MIN_IMAGES
    from t2ibench.metrics.networks import load_features

    problems: list[str] = []
    files = _images(problems, args.dir, "FID statistics", MIN_IMAGES)
    if not args.output.parent.is_dir():
        problems.append(f"{args.output}: its folder {args.output.parent} does not exist")
    _raise(problems)
    ext = load_features(args.features, args.resize, args.weights)
    f = FID()
    f.update(_extract(args, ext, files))
    try:
        stats_file.save(args.output, f.stats(), stats_file.provenance(ext.key, files, f.n))
    except OSError as e:
        raise UserError(f"{args.output}: cannot write statistics ({e.strerror or e})") from None
    n = f.n
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
