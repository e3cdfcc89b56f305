"""Bad input to `score` and to a run's scoring: one line per problem and exit 2, or a NaN row that says why.

Never a traceback, never a bare number below a metric's minimum sample size.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import t2ibench
from t2ibench.cli import main
from t2ibench.metrics.evaluate import ImageRecord, evaluate
from t2ibench.metrics.cmmd import CMMDOptions
from t2ibench.metrics.fid import FIDOptions
from t2ibench.metrics.kid import KIDOptions
from t2ibench.metrics.perceptual import LPIPSOptions

INCEPTION = ("--features", "random:inception")
CLIP = ("--model", "random:ViT-B-32")
ALEX = ("--net", "random:alex")


def _images(folder: Path, n: int, size: int | tuple[int, int] = 32, seed: int = 0, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = (size, size) if isinstance(size, int) else size
    for i in range(start, start + n):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Folders named after what they hold."""
    root = tmp_path_factory.mktemp("bad")
    _images(root / "one", 1)
    _images(root / "two", 2, seed=1)
    _images(root / "three", 3, seed=2)
    (root / "empty").mkdir()
    _images(root / "corrupt", 3, seed=3)
    (root / "corrupt" / "003.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    _images(root / "notimage", 2, seed=4)
    (root / "notimage" / "readme.png").write_text("plain text with an image's name")
    _images(root / "truncated", 3, seed=5)
    for name in ("001.png", "002.png"):  # a valid header: only decoding (in a loader worker) fails
        data = (root / "truncated" / name).read_bytes()
        (root / "truncated" / name).write_bytes(data[: len(data) // 2])
    _images(root / "tiny_a", 2, size=16, seed=6)
    _images(root / "tiny_b", 2, size=16, seed=7)
    _images(root / "six", 6, seed=8)
    _images(root / "four", 4, seed=9)
    _images(root / "big", 2, size=32, seed=10)
    _images(root / "other_size", 1, size=32, seed=11)
    _images(root / "other_size", 1, size=(40, 24), seed=12, start=1)
    np.savez(root / "wrongdim.npz", mu=np.zeros(10), sigma=np.eye(10))
    np.savez(root / "flat_sigma.npz", mu=np.zeros(2048), sigma=np.zeros(2048))
    np.savez(root / "no_sigma.npz", mu=np.zeros(2048))
    np.savez(root / "dim4.npz", mu=np.zeros(4), sigma=np.eye(4))
    np.savez(root / "nan.npz", mu=np.full(4, np.nan), sigma=np.eye(4))
    (root / "prompts.txt").write_text("a\nb\nc\n")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One feature cache for the module: each test folder goes through each network once."""
    return str(tmp_path_factory.mktemp("cache"))


def _fails(capsys, argv: list[str]) -> list[str]:
    """Run the CLI, expect exit 2 without a traceback; the error lines."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "DataLoader worker" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("t2ibench: error: ")]
    assert lines and len(lines) == len([ln for ln in err.splitlines() if ln.strip()]), err
    return [ln.removeprefix("t2ibench: error: ") for ln in lines]


# (argv with {d} for the folders' root, the expected error lines as regexes, in order)
BAD = {
    "fid one image": (["fid", "{d}/one", "{d}/two", *INCEPTION], [r"one: FID needs at least 2 images, found 1$"]),
    "stats one image": (["stats", "{d}/one", "-o", "{d}/out.npz", *INCEPTION],
                        [r"one: FID statistics needs at least 2 images, found 1$"]),
    "kid one image": (["kid", "{d}/two", "{d}/one", *INCEPTION], [r"one: KID needs at least 2 images, found 1$"]),
    "cmmd one image": (["cmmd", "{d}/one", "{d}/two", *CLIP], [r"one: CMMD needs at least 2 images, found 1$"]),
    "fid empty folder": (["fid", "{d}/empty", "{d}/two", *INCEPTION], [r"empty: no images \("]),
    "kid empty folder": (["kid", "{d}/two", "{d}/empty", *INCEPTION], [r"empty: no images \("]),
    "cmmd empty folder": (["cmmd", "{d}/empty", "{d}/two", *CLIP], [r"empty: no images \("]),
    "clip empty folder": (["clip", "{d}/empty", "--prompts", "{d}/prompts.txt", *CLIP], [r"empty: no images \("]),
    "lpips empty folder": (["lpips", "{d}/empty", "{d}/two", *ALEX], [r"empty: no images \("]),
    "stats empty folder": (["stats", "{d}/empty", "-o", "{d}/out.npz", *INCEPTION], [r"empty: no images \("]),
    "missing folder": (["kid", "{d}/nowhere", "{d}/two", *INCEPTION], [r"nowhere: not a folder of images"]),
    "fid corrupt file": (["fid", "{d}/corrupt", "{d}/two", *INCEPTION], [r"corrupt/003\.png: cannot read image"]),
    "fid non-image file": (["fid", "{d}/two", "{d}/notimage", *INCEPTION],
                           [r"notimage/readme\.png: cannot read image"]),
    "kid corrupt file": (["kid", "{d}/corrupt", "{d}/two", *INCEPTION], [r"corrupt/003\.png: cannot read image"]),
    "cmmd corrupt file": (["cmmd", "{d}/two", "{d}/corrupt", *CLIP], [r"corrupt/003\.png: cannot read image"]),
    "clip corrupt file": (["clip", "{d}/corrupt", "--prompts", "{d}/prompts.txt", *CLIP],
                          [r"corrupt/003\.png: cannot read image"]),
    "lpips corrupt file": (["lpips", "{d}/corrupt", "{d}/corrupt", *ALEX], [r"corrupt/003\.png: cannot read image"]),
    "stats non-image file": (["stats", "{d}/notimage", "-o", "{d}/out.npz", *INCEPTION],
                             [r"notimage/readme\.png: cannot read image"]),
    "two problems, two lines": (["fid", "{d}/one", "{d}/corrupt", *INCEPTION],
                                [r"one: FID needs at least 2", r"corrupt/003\.png: cannot read image"]),
    "npz of another dimension": (["fid", "{d}/wrongdim.npz", "{d}/two", *INCEPTION],
                                 [r"wrongdim\.npz: statistics of dimension 10 do not match the 'random:inception' "
                                  r"features \(dimension 2048\)"]),
    "two npz of different dimensions": (["fid", "{d}/wrongdim.npz", "{d}/dim4.npz"],
                                        [r"wrongdim\.npz: statistics of dimension 10 do not match .*dim4\.npz "
                                         r"\(dimension 4\)"]),
    "npz sigma not d×d": (["fid", "{d}/two", "{d}/flat_sigma.npz", *INCEPTION],
                          [r"flat_sigma\.npz: 'mu' must hold d values and 'sigma' a d×d matrix, got mu of shape "
                           r"\(2048,\) and sigma of shape \(2048,\)"]),
    "npz without sigma": (["fid", "{d}/no_sigma.npz", "{d}/two", *INCEPTION],
                          [r"no_sigma\.npz: not a FID statistics file with 'mu' and 'sigma'"]),
    "npz with NaN": (["fid", "{d}/nan.npz", "{d}/wrongdim.npz"], [r"nan\.npz: 'mu' or 'sigma' holds NaN"]),
    "npz missing": (["fid", "{d}/absent.npz", "{d}/two", *INCEPTION], [r"absent\.npz: no such file"]),
    "stats into a missing folder": (["stats", "{d}/two", "-o", "{d}/no/dir/out.npz", *INCEPTION],
                                    [r"out\.npz: its folder .*no/dir does not exist"]),
    "lpips images too small": (["lpips", "{d}/tiny_a", "{d}/tiny_b", *ALEX],
                               [r"^lpips not computed: images too small for LPIPS \(2 below 31×31 pixels, "
                                r"e\.g\. tiny_b/000\.png 16×16\)$"]),
    "lpips unpaired names": (["lpips", "{d}/six", "{d}/four", *ALEX],
                             [r"six: 2 images have no same-named image in .*four \(images are paired by file "
                              r"name\): 004\.png, 005\.png$"]),
    "lpips unpaired in the second folder": (["lpips", "{d}/one", "{d}/other_size", *ALEX],
                                            [r"other_size: 1 image has no same-named image in .*one.*: 001\.png$"]),
    "kid no subsets": (["kid", "{d}/two", "{d}/three", *INCEPTION, "--subsets", "0"],
                       [r"kid: subsets: Input should be greater than 0"]),
    "kid subsets of one image": (["kid", "{d}/two", "{d}/three", *INCEPTION, "--subset-size", "1"],
                                 [r"kid: subset_size: Input should be greater than 1"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_score_bad_input_is_one_line_per_problem(case, d, cache, capsys):
    argv, expected = BAD[case]
    lines = _fails(capsys, ["score", *(a.format(d=d) for a in argv), "--num-workers", "0", "--cache-dir", cache])
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected):
        assert re.search(pattern, line), (line, pattern)


def test_decode_errors_in_loader_workers_name_each_file(d, cache, capsys):
    """Headers are fine, decoding fails inside two worker processes: each file named once, no worker traceback."""
    lines = _fails(capsys, ["score", "fid", f"{d}/truncated", f"{d}/truncated", *INCEPTION, "--num-workers", "2",
                            "--batch-size", "1", "--cache-dir", cache])
    assert lines == [f"{d}/truncated/001.png: cannot read image (image file is truncated)",
                     f"{d}/truncated/002.png: cannot read image (image file is truncated)"]


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--num-workers", "-1")])
def test_score_rejects_impossible_counts(flag, value, d, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["score", "kid", f"{d}/two", f"{d}/three", flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: must be at least" in err and "Traceback" not in err


def _score_json(capsys, cache: str, *argv: str) -> dict:
    assert main(["score", *argv, "--json", "--num-workers", "0", "--cache-dir", cache]) == 0
    return json.loads(capsys.readouterr().out)


def test_kid_says_when_the_subset_size_is_cut(d, cache, capsys):
    """2 vs 3 images with the default subset size 1000: the cut is a note; equal sets: the std is void."""
    out = _score_json(capsys, cache, "kid", f"{d}/two", f"{d}/three", *INCEPTION, "--subsets", "5")
    assert (out["n_a"], out["n_b"]) == (2, 3) and math.isfinite(out["value"])
    assert "KID subset size cut from 1000 to 2 (the smaller set's size)" in out["notes"]
    out = _score_json(capsys, cache, "kid", f"{d}/two", f"{d}/big", *INCEPTION, "--subsets", "5")
    assert out["kid_std"] == pytest.approx(0, abs=1e-12)  # every subset is the whole set ...
    assert any("kid_std is 0 and measures no uncertainty" in n for n in out["notes"])  # ... and it says so
    assert all("cut" not in n for n in _score_json(capsys, cache, "kid", f"{d}/two", f"{d}/three", *INCEPTION,
                                                   "--subset-size", "2", "--subsets", "5")["notes"])


def test_lpips_notes_pairs_of_different_sizes(d, cache, capsys):
    """other_size/001.png is 40×24 against big/001.png at 32×32: scored at the partner's size, with a note."""
    out = _score_json(capsys, cache, "lpips", f"{d}/other_size", f"{d}/big", *ALEX)
    assert (out["n_a"], out["n_b"]) == (2, 2)
    assert out["notes"] == ["1 of 2 pairs differ in size; the first image of each was resized (bilinear) to its "
                            "partner's size before LPIPS, e.g. 001.png 40×24 → 32×32"]
    same = _score_json(capsys, cache, "lpips", f"{d}/big", f"{d}/big", *ALEX)
    assert same["notes"] == [] and same["value"] == pytest.approx(0, abs=1e-7)


# --- inside a run ---------------------------------------------------------------------------

def _records(config: str, folder: Path, prompts: int = 2) -> list[ImageRecord]:
    return [ImageRecord(config, f"p{i % prompts}", f"prompt {i % prompts}", i // prompts, p)
            for i, p in enumerate(sorted(folder.iterdir()))]


SET_METRICS = {"fid": FIDOptions(features="random:inception"), "kid": KIDOptions(features="random:inception", subsets=5),
               "cmmd": CMMDOptions(model="random:ViT-B-32")}


def test_evaluate_gives_nan_rows_that_say_why_below_the_minimum(d, cache):
    """A one-image config gets NaN rows saying 'too few images (1 < 2)'; a config with enough images is scored."""
    images = _records("ref", d / "three") + _records("single", d / "one") + _records("ok", d / "two")
    rows = {(r.config_id, r.metric): r for r in evaluate(SET_METRICS, images, "ref", cache_dir=Path(cache))}
    for metric in SET_METRICS:
        single = rows["single", metric]
        assert math.isnan(single.value) and single.lo is None and single.hi is None and single.n == 1
        assert any(n.startswith("too few images (1 < 2)") for n in single.extra["notes"]), single.extra
        assert math.isfinite(rows["ok", metric].value)
    assert "KID subset size cut from 1000 to 2 (the smaller set's size)" in rows["ok", "kid"].extra["notes"]


def test_evaluate_with_too_few_reference_images(d, cache):
    """One reference image (or none: all its cells failed) → every candidate row is NaN and names the cause."""
    for ref in (_records("ref", d / "one"), []):
        images = ref + _records("cand", d / "three")
        rows = evaluate(SET_METRICS, images, "ref", cache_dir=Path(cache))
        assert {r.metric for r in rows} == set(SET_METRICS)
        for r in rows:
            assert math.isnan(r.value)
            assert any(n.startswith(f"too few reference images ({len(ref)} < 2)") for n in r.extra["notes"]), r


def test_evaluate_lpips_images_too_small(d, cache):
    images = _records("ref", d / "tiny_a") + _records("cand", d / "tiny_b")
    rows = {(r.config_id, r.metric): r for r in evaluate({"lpips": LPIPSOptions(net="random:alex")}, images, "ref",
                                                         cache_dir=Path(cache))}
    assert set(rows) == {("ref", "lpips_diversity"), ("cand", "lpips_diversity"), ("cand", "lpips")}
    for r in rows.values():
        assert math.isnan(r.value)
        assert any(re.fullmatch(r"images too small for LPIPS \(2 below 31×31 pixels, e\.g\. tiny_[ab]/000\.png "
                                r"16×16\)", n) for n in r.extra["notes"]), r.extra


def test_run_with_a_single_ok_image_still_writes_reports(write_suite, tmp_path, monkeypatch):
    """Three of the four cells of 'steps=1' fail: its FID/KID/CMMD rows are NaN with a note, the run reports."""
    from t2ibench.backends.torch.engine import TorchModel

    real = TorchModel.generate

    def generate(self, prompts, seeds, knobs):
        if knobs.steps == 1 and (seeds[0] != 0 or prompts[0] != "a red cube"):
            raise RuntimeError("injected failure")
        return real(self, prompts, seeds, knobs)

    monkeypatch.setattr(TorchModel, "generate", generate)
    path = write_suite(prompts=["a red cube", "a lighthouse"], seeds=[0, 1], matrix={"steps": [1]},
                       reference={"steps": 2}, defaults={"steps": 1, "width": 32, "height": 32},
                       timing={"warmup": 0, "repeats": 1},
                       metrics={"fid": {"features": "random:inception"}, "kid": {"features": "random:inception"},
                                "cmmd": {"model": "random:ViT-B-32"}})
    run = t2ibench.run(path, out=tmp_path / "run", device="cpu")
    assert (run.run_dir / "results.csv").is_file() and (run.run_dir / "report.html").is_file()
    results = run.results().set_index("config")
    assert results.loc["steps=1", "n_ok"] == 1 and results.loc["reference", "n_ok"] == 4
    from t2ibench.store import RunStore

    with RunStore.open(run.run_dir) as store:
        rows = {m["metric"]: m for m in store.metrics()}
    assert set(rows) == {"fid", "kid", "cmmd"}
    for metric, row in rows.items():
        assert row["value"] is None or math.isnan(row["value"]), metric  # NaN, never a bare number
        assert any(n.startswith("too few images (1 < 2)") for n in row["extra"]["notes"]), metric
        assert math.isnan(results.loc["steps=1", metric])


# --- a missing model folder -----------------------------------------------------------------

@pytest.mark.parametrize("verb", ["run", "validate"])
def test_missing_model_folder_names_the_suite_file_and_line(verb, write_suite, tmp_path, capsys):
    path = write_suite(model=str(tmp_path / "no-such-model"),
                       matrix={"model": ["random:tiny-sd", "./also/missing"]})
    argv = [verb, str(path)] + (["--out", str(tmp_path / "run"), "--device", "cpu"] if verb == "run" else [])
    lines = _fails(capsys, argv)
    assert len(lines) == 1  # the top-level model is replaced by the matrix's, so only one problem
    # './also/missing' resolves against the suite's folder, wherever t2ibench runs from
    assert lines[0].startswith(f"{path}:") and lines[0].endswith(
        f": matrix.model[1]: model folder '{tmp_path / 'also' / 'missing'}' does not exist (relative paths in a "
        f"suite resolve against its folder, {tmp_path})")
    line_no = int(lines[0].split(":")[1])
    assert "./also/missing" in path.read_text().splitlines()[line_no - 1]
    assert not (tmp_path / "run" / "run.sqlite").exists()


def test_missing_top_level_model_folder(write_suite, tmp_path, capsys):
    path = write_suite(model=str(tmp_path / "no-such-model"))
    (line,) = _fails(capsys, ["run", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert line == f"{path}:2: model: model folder '{tmp_path / 'no-such-model'}' does not exist"
