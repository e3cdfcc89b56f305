"""`score` CLI, networks and `evaluate` on tiny folders, offline, against the reference packages."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.errors import UserError
from t2ibench.metrics.evaluate import ImageRecord, evaluate
from t2ibench.metrics.cli import add_score_parser, main
from t2ibench.metrics.inception import FID_WEIGHTS_FILE, FIDInceptionV3
from t2ibench.metrics.clipscore import ClipScoreOptions
from t2ibench.metrics.cmmd import CMMDOptions
from t2ibench.metrics.fid import FIDOptions
from t2ibench.metrics.kid import KIDOptions
from t2ibench.metrics.perceptual import LPIPSOptions

N = 12


def _save_images(folder: Path, seed: int, shift: float) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(N):
        low = rng.random((8, 8, 3)) * 255
        img = Image.fromarray(low.astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
        arr = np.clip(np.asarray(img, np.float64) + shift + rng.normal(0, 10, (64, 64, 3)), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Folders a, b; random FID Inception weights saved where pytorch-fid finds them offline."""
    root = tmp_path_factory.mktemp("metrics")
    _save_images(root / "a", 0, 0.0)
    _save_images(root / "b", 1, 40.0)
    torch_home = root / "torch"
    ckpt = torch_home / "hub" / "checkpoints" / FID_WEIGHTS_FILE
    ckpt.parent.mkdir(parents=True)
    model = FIDInceptionV3()
    model.init_random(seed=123)
    torch.save(model.fid_state_dict(), ckpt)
    saved = {k: os.environ.get(k) for k in ("TORCH_HOME", "T2IBENCH_OFFLINE", "T2IBENCH_WEIGHTS")}
    os.environ.update(TORCH_HOME=str(torch_home), T2IBENCH_OFFLINE="1")
    os.environ.pop("T2IBENCH_WEIGHTS", None)
    yield {"a": root / "a", "b": root / "b", "weights": ckpt, "cache": root / "cache", "root": root}
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def score(capsys, *argv: str) -> dict:
    assert main(["score", *argv, "--json", "--num-workers", "0"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # two 2048×2048 sqrtm: ~100 s each on a 2-core machine
def test_score_fid_matches_pytorch_fid(env, capsys):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    ours = score(capsys, "fid", str(env["a"]), str(env["b"]), "--cache-dir", str(env["cache"]))
    theirs = calculate_fid_given_paths([str(env["a"]), str(env["b"])], 50, "cpu", 2048, num_workers=0)
    assert ours["value"] > 0 and ours["random_weights"] is False
    assert ours["value"] == pytest.approx(theirs, rel=1e-3)
    assert any("KID or CMMD" in n for n in ours["notes"])  # N < 2048


def _pytorch_fid_stats(folder):
    from pytorch_fid.fid_score import compute_statistics_of_path
    from pytorch_fid.inception import InceptionV3

    return compute_statistics_of_path(str(folder), InceptionV3([3]).eval(), 50, 2048, "cpu", 0)


def test_score_stats_equal_pytorch_fid_statistics(env, capsys):
    """mu/sigma (what FID is computed from) equal pytorch-fid's; FID itself: the slow test above."""
    out = env["root"] / "a.npz"
    score(capsys, "stats", str(env["a"]), "-o", str(out), "--weights", str(env["weights"]),
          "--cache-dir", str(env["cache"]))
    with np.load(out) as f:
        mu, sigma = f["mu"], f["sigma"]
    mu_ref, sigma_ref = _pytorch_fid_stats(env["a"])
    assert sigma.shape == (2048, 2048) and np.abs(sigma).max() > 0
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-4, atol=1e-7)


def test_stats_order_invariant_and_kid_self_small(env, capsys, tmp_path):
    args = ("--cache-dir", str(env["cache"]))
    shuffled = tmp_path / "shuffled"  # same images, other names → other order
    shuffled.mkdir()
    for i, p in enumerate(sorted(env["a"].iterdir())):
        (shuffled / f"{(7 * i) % N:03d}x.png").write_bytes(p.read_bytes())
    for folder, out in ((env["a"], "a.npz"), (shuffled, "s.npz")):
        score(capsys, "stats", str(folder), "-o", str(tmp_path / out), *args)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "s.npz") as s:
        np.testing.assert_allclose(a["mu"], s["mu"], rtol=1e-12)
        np.testing.assert_allclose(a["sigma"], s["sigma"], rtol=1e-9, atol=1e-15)
    kab = score(capsys, "kid", str(env["a"]), str(env["b"]), "--subset-size", "6", "--subsets", "20", *args)
    kaa = score(capsys, "kid", str(env["a"]), str(env["a"]), "--subset-size", "6", "--subsets", "20", *args)
    assert kab["value"] > abs(kaa["value"]) and "kid_std" in kab


def test_missing_weights_is_a_user_error_naming_the_file(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(UserError, match=FID_WEIGHTS_FILE):
        from t2ibench.metrics.networks import load_features
        load_features("inception")
    assert main(["score", "fid", str(env["a"]), str(env["b"])]) == 2
    err = capsys.readouterr().err
    assert FID_WEIGHTS_FILE in err and "T2IBENCH_WEIGHTS" in err and "random:inception" in err
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(env["weights"].parent))  # found there instead
    assert load_features("inception").key.startswith("inception|resize=bilinear|w=")


def test_lpips_matches_lpips_package_and_prints_random_label(env, capsys):
    import lpips

    torch.manual_seed(0)  # our random:alex is lpips' random backbone drawn with seed 0
    ref_net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()

    def load(p):
        return torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

    with torch.no_grad():
        expected = np.mean([ref_net(load(env["a"] / f), load(env["b"] / f)).item()
                            for f in sorted(os.listdir(env["a"]))])
    assert score(capsys, "lpips", str(env["a"]), str(env["b"]), "--net", "random:alex")["value"] == pytest.approx(expected, rel=1e-5)
    assert score(capsys, "lpips", str(env["a"]), str(env["a"]), "--net", "random:alex")["value"] == 0
    assert main(["score", "lpips", str(env["a"]), str(env["b"]), "--net", "random:alex"]) == 0
    assert "not meaningful (random weights)" in capsys.readouterr().out


def _hand_clip():
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32")


def test_clip_score_matches_hand_computation_and_keeps_eot(env, capsys, tmp_path):
    model, preprocess, tok = _hand_clip()
    long_prompt = " ".join(["a very red apple on a wooden table"] * 20)
    prompts = [f"photo number {i}" for i in range(N - 1)] + [long_prompt]
    tokens = tok(prompts)
    assert tokens.shape[1] == 77 and tokens[-1, -1].item() == tok.eot_token_id  # truncated, end token kept
    files = sorted(env["a"].iterdir())
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files]))
        txt = model.encode_text(tokens)
    expected = (100 * torch.nn.functional.cosine_similarity(img.double(), txt.double())).mean().item()
    txt_file = tmp_path / "prompts.txt"
    txt_file.write_text("\n".join(prompts))
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"file": f.name, "prompt": p}) for f, p in zip(files, prompts)))
    for pf in (txt_file, jsonl):
        got = score(capsys, "clip", str(env["a"]), "--prompts", str(pf), "--model", "random:ViT-B-32")
        assert got["value"] == pytest.approx(expected, rel=1e-4, abs=1e-4) and got["random_weights"]


def test_cmmd_cli_self_zero(env, capsys):
    args = ("--model", "random:ViT-B-32", "--cache-dir", str(env["cache"]))
    assert score(capsys, "cmmd", str(env["a"]), str(env["a"]), *args)["value"] == pytest.approx(0, abs=1e-9)
    assert score(capsys, "cmmd", str(env["a"]), str(env["b"]), *args)["value"] > 0


def test_cli_rejects_npz_for_kid(env):
    with pytest.raises(UserError, match="npz"):
        import argparse

        parser = argparse.ArgumentParser()
        add_score_parser(parser.add_subparsers())
        args = parser.parse_args(["score", "kid", "x.npz", str(env["b"])])
        args.func(args)


def _records(env):
    recs = []
    for cfg, folder in (("ref", env["a"]), ("cand", env["b"])):
        for i, p in enumerate(sorted(folder.iterdir())):
            recs.append(ImageRecord(cfg, f"p{i // 2}", f"prompt {i // 2}", i % 2, p))
    return recs


def test_evaluate_end_to_end(env):
    metrics = {"kid": KIDOptions(subsets=10, subset_size=6),
               "cmmd": CMMDOptions(model="random:ViT-B-32"), "clip_score": ClipScoreOptions(model="random:ViT-B-32"),
               "lpips": LPIPSOptions(net="random:alex")}
    rows = evaluate(metrics, _records(env), "ref", cache_dir=env["cache"])
    got = {(r.config_id, r.metric): r for r in rows}
    assert set(got) == {("cand", "kid"), ("cand", "cmmd"), ("cand", "lpips"),
                        ("ref", "clip_score"), ("cand", "clip_score"),
                        ("ref", "lpips_diversity"), ("cand", "lpips_diversity")}
    assert "kid_std" in got["cand", "kid"].extra and "diversity" in got["cand", "lpips"].extra
    for key in [("cand", "cmmd"), ("ref", "clip_score"), ("cand", "lpips")]:
        assert got[key].random_weights and "not meaningful (random weights)" in got[key].extra["notes"]


@pytest.mark.slow  # the sqrtm of 2048×2048 used as the reference
def test_evaluate_fid_equals_streaming_fid(env):
    from t2ibench.metrics.features import extract
    from t2ibench.metrics.fid import FID
    from t2ibench.metrics.images import list_images
    from t2ibench.metrics.networks import load_features

    (fid,) = evaluate({"fid": FIDOptions()}, _records(env), "ref", cache_dir=env["cache"])
    assert fid.config_id == "cand" and not fid.random_weights and fid.n == N and fid.lo <= fid.value <= fid.hi
    assert any("KID or CMMD" in n for n in fid.extra["notes"])
    ext = load_features("inception")
    fa, fb = FID(), FID()
    fa.update(extract(list_images(env["a"]), ext, num_workers=0))
    fb.update(extract(list_images(env["b"]), ext, num_workers=0))
    # The run path computes Tr sqrt(Σ_aΣ_b) exactly (singular values of the 12×12 cross matrix); pytorch-fid's
    # sqrtm of the rank-11 2048×2048 product carries ~1e-8 relative error on a trace of ~1e2, which the
    # cancellation in FID ≈ 1 turns into ~1e-6 relative here.
    assert fid.value == pytest.approx(fb.compute(fa), rel=1e-4)
    from t2ibench.metrics.fid import psd_sqrt, trace_sqrt_cross, trace_sqrt_product

    xa, xb = (extract(list_images(env[k]), ext, num_workers=0).astype(float) for k in ("a", "b"))
    exact_eigen = trace_sqrt_product(xb @ psd_sqrt(np.cov(xa, rowvar=False)))  # an independent exact route
    assert trace_sqrt_cross(xb, xa) == pytest.approx(exact_eigen, rel=1e-7)


def test_evaluate_user_errors(env):
    with pytest.raises(UserError, match="no reference"):
        evaluate({"fid": FIDOptions()}, _records(env), None, cache_dir=env["cache"])
    with pytest.raises(UserError, match="did you mean 'fid'"):
        evaluate({"fdi": FIDOptions()}, _records(env), "ref", cache_dir=env["cache"])
