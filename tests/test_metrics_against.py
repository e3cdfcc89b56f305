"""`against:` a folder or a pytorch-fid .npz, given relative to the suite file."""

from __future__ import annotations

import shutil

import numpy as np

import t2ibench


def test_fid_against_folder_and_npz_relative_to_suite(write_suite, tmp_path, monkeypatch):
    first = t2ibench.run(write_suite("ref.yaml", name="refimgs", seeds=[0, 1]), out=tmp_path / "ref", device="cpu",
                         metrics=False)
    folder = tmp_path / "refimages"
    folder.mkdir()
    for p in (first.run_dir / "images").rglob("*.png"):
        shutil.copy(p, folder / p.name)
    from t2ibench.cli import main

    assert main(["score", "stats", str(folder), "-o", str(tmp_path / "ref.npz"), "--features", "random:inception"]) == 0
    monkeypatch.chdir("/")  # relative paths must resolve against the suite's folder, not the cwd
    path = write_suite(matrix={"steps": [2, 3]}, metrics={
        "fid": {"against": "refimages", "features": "random:inception"},
        "kid": {"against": "refimages", "features": "random:inception", "subsets": 5, "subset_size": 4},
    })
    folder_run = t2ibench.run(path, out=tmp_path / "a", device="cpu").results().set_index("config")
    path = write_suite(matrix={"steps": [2, 3]}, metrics={"fid": {"against": "ref.npz", "features": "random:inception"}})
    npz_run = t2ibench.run(path, out=tmp_path / "b", device="cpu").results().set_index("config")
    for name in ("steps=2", "steps=3"):
        assert np.isfinite(folder_run.loc[name, "kid"])
        # the same reference, as images or as pytorch-fid statistics, gives the same FID
        assert abs(folder_run.loc[name, "fid"] - npz_run.loc[name, "fid"]) <= 1e-5 * abs(folder_run.loc[name, "fid"]) + 1e-9
    # steps=3 regenerates exactly the reference images (same model, prompts, seeds): FID against itself ≈ 0
    assert abs(folder_run.loc["steps=3", "fid"]) < 1e-9 and folder_run.loc["steps=2", "fid"] > 1e-6
