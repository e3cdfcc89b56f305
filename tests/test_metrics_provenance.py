"""Statistics files know where they came from: extractor, weights hash, resize, image size and count."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from t2ibench.cli import main
from t2ibench.metrics import stats_file


def _folder(path, n, seed, size=(32, 32)):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path / f"p{i}-0.png")
    return path


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("prov")
    return _folder(root / "a", 6, 0), _folder(root / "b", 5, 1, (40, 24)), root


def test_stats_file_records_its_provenance_and_loads_without_pickle(folders, capsys):
    a, _, root = folders
    out = root / "a.npz"
    assert main(["score", "stats", str(a), "-o", str(out), "--features", "random:inception", "--cache-dir",
                 str(root / "cache")]) == 0
    meta = stats_file.read_provenance(out)
    assert meta["extractor"] == "random:inception" and meta["resize"] == "bilinear"
    assert meta["weights"] == "random0" and meta["count"] == 6 and meta["image_size"] == "32x32"
    assert meta["t2ibench"]
    with np.load(out, allow_pickle=False) as f:  # still a pytorch-fid file: mu and sigma
        assert f["mu"].shape == (2048,) and f["sigma"].shape == (2048, 2048)


def test_a_different_resize_is_an_error_naming_both_sides(folders, capsys):
    a, b, root = folders
    out = root / "clean.npz"
    assert main(["score", "stats", str(a), "-o", str(out), "--features", "random:inception", "--resize", "clean",
                 "--cache-dir", str(root / "cache")]) == 0
    capsys.readouterr()
    code = main(["score", "fid", str(b), str(out), "--features", "random:inception", "--cache-dir",
                 str(root / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "resize=clean" in err and "resize=bilinear" in err and str(out) in err
    assert "Traceback" not in err
    # and two statistics files of different resize modes
    bil = root / "bil.npz"
    assert main(["score", "stats", str(b), "-o", str(bil), "--features", "random:inception", "--cache-dir",
                 str(root / "cache")]) == 0
    capsys.readouterr()
    assert main(["score", "fid", str(out), str(bil)]) == 2
    assert "resize" in capsys.readouterr().err


def test_same_provenance_scores_and_says_the_reference_is_fixed(folders, capsys):
    a, b, root = folders
    out = root / "b.npz"
    main(["score", "stats", str(b), "-o", str(out), "--features", "random:inception", "--cache-dir", str(root / "c")])
    capsys.readouterr()
    assert main(["score", "fid", str(a), str(out), "--features", "random:inception", "--ci", "--json",
                 "--cache-dir", str(root / "c")]) == 0
    row = _json(capsys)
    assert any("treats the .npz reference statistics as fixed" in n and "5 images" in n for n in row["notes"])


def test_a_foreign_npz_is_accepted_with_a_note(folders, capsys):
    a, _, root = folders
    foreign = root / "foreign.npz"
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 2048))
    np.savez(foreign, mu=f.mean(0), sigma=np.cov(f, rowvar=False))  # as pytorch-fid writes them
    assert stats_file.read_provenance(foreign) is None
    assert main(["score", "fid", str(a), str(foreign), "--features", "random:inception", "--json",
                 "--cache-dir", str(root / "c")]) == 0
    row = _json(capsys)
    assert any("without provenance" in n for n in row["notes"])


def test_a_folder_reference_is_resampled_too(folders, capsys):
    a, b, root = folders
    assert main(["score", "fid", str(a), str(b), "--features", "random:inception", "--ci", "--json",
                 "--cache-dir", str(root / "c")]) == 0
    row = _json(capsys)
    assert row["lo"] <= row["value"] <= row["hi"]
    assert any("resamples both sides" in n for n in row["notes"])


def test_extractor_provenance_reads_every_cache_key_form():
    assert stats_file.extractor_provenance("inception|resize=clean|w=abc") == {
        "extractor": "inception", "weights": "abc", "resize": "clean"}
    assert stats_file.extractor_provenance("clip:ViT-B-32|w=openai:12") == {
        "extractor": "clip:ViT-B-32", "weights": "openai:12"}
    stats_file.check("x.npz", {"extractor": "a", "weights": "1"}, {"extractor": "a", "weights": "1"}, "y")
    with pytest.raises(Exception, match="weights differ"):
        stats_file.check("x.npz", {"extractor": "a", "weights": "1"}, {"extractor": "a", "weights": "2"}, "y")
