"""Contract tests every extension passes, written once and parametrised over the registered implementations:
backends (the torch backend and a fake one), executors, and metrics."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import fake_backend
from t2ibench.backends import BACKENDS
from t2ibench.errors import SkipConfig, UserError
from t2ibench.executors import EXECUTORS, parse_executor
from t2ibench.metrics.evaluate import ImageRecord, evaluate
from t2ibench.metrics.registry import METRICS
from t2ibench.suites.knobs import Knobs

fake_backend.register()

# --- backends ------------------------------------------------------------------------------------

BASE = dict(steps=2, width=32, height=32, guidance_scale=5.0)
# every backend that declares an offline test model on its spec (the product's and the tests' fake one)
TESTED = [name for name, spec in BACKENDS.items() if spec.test_model]
# backends timed from outside the pipeline (an HTTP endpoint): a call is one phase, without step marks
REMOTE = {"http"}
# knobs a backend's test configs need beyond BASE: the http backend's endpoint is a test server (below)
EXTRA: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def images_endpoint():
    """The http backend's endpoint: tests/serving_apps.py's images app under a real uvicorn."""
    if "http" not in TESTED or importlib.util.find_spec("uvicorn") is None:
        yield
        return
    from serving_apps import ImagesApp, Served

    with Served(ImagesApp()) as url:
        EXTRA["http"] = {"endpoint": {"url": url}}
        yield
        EXTRA.pop("http", None)


def _load(name: str):
    spec = BACKENDS.get(name)
    if spec.missing():
        pytest.skip(f"backend '{name}' needs {', '.join(spec.missing())} ({spec.install_hint()})")
    if name == "http" and name not in EXTRA:
        pytest.skip("the http backend's contract tests serve a test endpoint: pip install 't2ibench[serve]'")
    return spec, spec.make_engine().load(spec.test_model, _knobs(name), "cpu")


@pytest.fixture(scope="module")
def loaded_by_name():
    """Each backend's test model, loaded once for the module."""
    models: dict = {}

    def get(name: str):
        if name not in models:
            models[name] = _load(name)[1]
        return models[name]
    yield get
    for model in models.values():
        model.close()


@pytest.fixture(scope="module", params=TESTED)
def loaded(request, loaded_by_name):
    return request.param, BACKENDS.get(request.param), loaded_by_name(request.param)


def _knobs(backend: str, **over) -> Knobs:
    return Knobs(backend=backend, **{**BASE, **EXTRA.get(backend, {}), **over})


def _pixels(outcome) -> list[bytes]:
    return [img.pixels.tobytes() for img in outcome.images]


def test_backend_generate_returns_one_image_per_prompt_at_the_knobs_size(loaded):
    name, _, model = loaded
    knobs = _knobs(name)
    model.configure(knobs)
    out = model.generate(["a red cube", "a cat"], [0, 1], knobs)
    assert [img.status for img in out.images] == ["ok", "ok"]
    assert all(img.pixels.shape == (32, 32, 3) and img.pixels.dtype == np.uint8 for img in out.images)


def test_backend_phases_partition_each_call(loaded):
    name, _, model = loaded
    knobs = _knobs(name, steps=3)
    model.configure(knobs)
    t = model.generate(["a red cube"], [0], knobs).timing
    assert t.encode_ms + t.denoise_ms + t.decode_ms == pytest.approx(t.latency_ms, rel=1e-9)
    if name in REMOTE:  # the whole request is the one phase it can see
        assert t.step_ms == [] and t.denoise_ms == t.latency_ms > 0
        return
    assert len(t.step_ms) == 3 and all(s > 0 for s in t.step_ms)
    assert sum(t.step_ms) == pytest.approx(t.denoise_ms, rel=1e-9)


def test_backend_configure_undoes_the_previous_config(loaded):
    """A config after another gives the same images as the same config configured first."""
    name, _, model = loaded
    plain, other = _knobs(name), _knobs(name, steps=3, prompt_suffix=", oil painting",
                                        **({"scheduler": "euler"} if name == "torch" else {}))
    model.configure(plain)
    first = _pixels(model.generate(["a red cube"], [3], plain))
    model.configure(other)
    changed = _pixels(model.generate(["a red cube"], [3], other))
    model.configure(plain)
    assert _pixels(model.generate(["a red cube"], [3], plain)) == first != changed


def test_backend_warmup_is_untimed_and_leaves_no_trace(loaded):
    name, _, model = loaded
    knobs = _knobs(name)
    model.configure(knobs)
    before = _pixels(model.generate(["a lighthouse"], [1], knobs))
    assert model.warmup(["a lighthouse"], [1], knobs) > 0
    assert _pixels(model.generate(["a lighthouse"], [1], knobs)) == before


def test_backend_peak_memory_resets(loaded):
    """The CPU peak is the RSS high-water mark since the last reset: a big transient allocation raises it,
    a reset brings it back down."""
    name, _, model = loaded
    model.reset_peak_memory()
    _, low = model.peak_memory()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
    del block
    _, high = model.peak_memory()
    model.reset_peak_memory()
    _, after = model.peak_memory()
    assert high >= low + 60 and after < high - 50


def test_backend_spec_load_key_and_warmup_policy(loaded):
    name, spec, model = loaded
    a, b = _knobs(name), _knobs(name, steps=5)
    assert spec.load_key("m", a) == spec.load_key("m", b)  # runtime knobs share the load
    if name in REMOTE:  # the server decides the precision; another endpoint is another load
        assert spec.load_key("m", a) != spec.load_key("m", _knobs(name, endpoint={"url": "http://127.0.0.1:1"}))
    else:
        assert spec.load_key("m", a) != spec.load_key("m", _knobs(name, precision="bf16"))
    assert spec.load_key("m", a)[-1] == name  # two backends never share a loaded model
    assert spec.warmup_calls(a, 0) == (1 if spec.compiles(a) else 0)
    if name == "torch":
        assert spec.warmup_calls(_knobs(name, compile=True), 0) == 1  # a compiled config always warms up
    model.recover()  # frees what a failed call left; must not break the model
    model.configure(a)
    assert model.generate(["x"], [0], a).images[0].status == "ok"


@pytest.mark.parametrize("name", TESTED)
def test_backend_close_releases_the_model(name):
    _, model = _load(name)
    model.close()
    assert getattr(model, "pipe", None) is None and getattr(model, "closed", True)


def _options_cases() -> list:
    return [pytest.param(name, options, id=f"{name}-{'-'.join(map(str, options.items()))}"[:90])
            for name in TESTED for options in BACKENDS.get(name).test_options]


@pytest.mark.parametrize("name, options", _options_cases())
def test_every_runtime_option_is_undone(name, options, loaded_by_name):
    """configure(A), configure(B), configure(A) gives A's pixels, for every option a backend declares; an option
    that skips here (a CUDA knob, a UNet without repeated blocks) must leave nothing applied either."""
    model = loaded_by_name(name)
    plain, other = _knobs(name), _knobs(name, **options)
    model.configure(plain)
    first = _pixels(model.generate(["a red cube"], [3], plain))
    try:
        model.configure(other)
        model.generate(["a red cube"], [3], other)
    except SkipConfig as e:
        assert str(e), "a skip says why"
    model.configure(plain)
    assert _pixels(model.generate(["a red cube"], [3], plain)) == first


@pytest.mark.parametrize("name", TESTED)
def test_every_runtime_option_of_a_backend_is_in_its_test_options(name):
    """Each engine option that is not a load-time knob appears in some test set (a new knob gets a contract
    test by being declared)."""
    spec = BACKENDS.get(name)
    runtime = set(spec.options.model_fields) - set(spec.load_fields)
    assert runtime <= {k for options in spec.test_options for k in options}


def test_engine_knobs_belong_to_their_backend():
    with pytest.raises(ValueError, match="belongs to backend 'torch'"):
        Knobs(backend="fake", attention="math")
    with pytest.raises(ValueError, match="unknown backend 'tourch'.*did you mean 'torch'"):
        Knobs(backend="tourch")
    assert Knobs(backend="fake").options.model_dump() == {}


def test_backend_is_part_of_config_id_only_when_set():
    from t2ibench.suites.schema import config_id

    torch_id, fake_id = config_id("m", Knobs()), config_id("m", Knobs(backend="fake"))
    assert torch_id != fake_id
    assert "backend" not in Knobs().hashed() and Knobs(backend="fake").hashed()["backend"] == "fake"


# --- executors -----------------------------------------------------------------------------------

def _suite(tmp_path: Path, **over) -> Path:
    data = {
        "name": "contract", "model": "fake:model", "prompts": ["a red cube", "a cat", "a lighthouse"],
        "seeds": [0, 1], "defaults": {"backend": "fake", "steps": 2, "width": 32, "height": 32},
        "matrix": {"steps": [1, 2]}, "include": [{"name": "broken", "prompt_suffix": "FAIL"}],
        "timing": {"warmup": 0, "repeats": 1},
    }
    data.update(over)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


NO_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray: pip install 't2ibench[ray]'")


@pytest.mark.parametrize("executor", [pytest.param(n, marks=NO_RAY if n == "ray" else ()) for n in EXECUTORS.names()])
def test_executor_reports_every_cell_once_isolates_failures_and_resumes(executor, tmp_path):
    from t2ibench.orchestration import execute
    from t2ibench.store import RunStore
    from t2ibench.suites import load_suite

    suite = load_suite(_suite(tmp_path))
    run = execute(suite, out=tmp_path / "run", device="cpu", executor=executor, metrics=False)
    cells = run.cells()
    keys = list(zip(cells["config"], cells["prompt_id"], cells["seed"]))
    assert len(keys) == len(set(keys)) == 3 * 3 * 2
    by_config = cells.groupby("config")["status"].apply(set).to_dict()
    # the broken config fails its calls; after 3 in a row (timing.max_consecutive_failures) the rest is skipped
    assert by_config == {"steps=1": {"ok"}, "steps=2": {"ok"}, "broken": {"failed", "skipped"}}
    with RunStore.open(run.run_dir) as store:
        calls_before = len(store.calls())
        images = {p: (run.run_dir / p).read_bytes() for p in cells["image_path"].dropna()}
    again = execute(suite, out=tmp_path / "run", device="cpu", executor=executor, metrics=False)
    cells2 = again.cells()
    assert sorted(zip(cells2["config"], cells2["prompt_id"], cells2["seed"])) == sorted(keys)
    assert {p: (run.run_dir / p).read_bytes() for p in cells2["image_path"].dropna()} == images
    with RunStore.open(run.run_dir) as store:
        assert len(store.calls()) == calls_before + 3  # only the failed config was retried


def test_executor_options_from_cli_and_suite(tmp_path):
    from t2ibench.cli import main

    assert parse_executor("ray", {"address": "auto", "max_actors": "8"}).options.max_actors == 8
    with pytest.raises(UserError, match="executor ray: option 'adress'.*did you mean 'address'"):
        parse_executor("ray", {"adress": "auto"})
    with pytest.raises(UserError, match="executor ray: option 'zzz'.*options of 'ray': address"):
        parse_executor("ray", {"zzz": "auto"})
    with pytest.raises(UserError, match="unknown executor 'rya'.*did you mean 'ray'"):
        parse_executor("rya", {})
    good = _suite(tmp_path, executor={"name": "local"})
    assert main(["validate", str(good)]) == 0
    bad = _suite(tmp_path, executor={"name": "ray", "max_actor": 2})
    assert main(["validate", str(bad)]) == 2
    assert main(["run", str(good), "--out", str(tmp_path / "r"), "--executor-opt", "nope"]) == 2


# --- metrics -------------------------------------------------------------------------------------

RANDOM_OPTIONS = {
    "fid": {"features": "random:inception"}, "kid": {"features": "random:inception", "subset_size": 4,
                                                     "subsets": 10},
    "cmmd": {"model": "random:ViT-B-32"}, "clip_score": {"model": "random:ViT-B-32"}, "lpips": {"net": "random:alex"},
    **{name: {"weights": "random:tiny"} for name in ("hpsv2", "pickscore", "image_reward", "aesthetic", "fd_dinov2")},
}


def _image(rng: np.random.Generator, shift: float) -> Image.Image:
    low = rng.random((8, 8, 3)) * 255
    img = Image.fromarray(low.astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    arr = np.clip(np.asarray(img, np.float64) + shift, 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    """Records of three configs over 4 prompts × 2 seeds: ``ref``, ``same`` (ref's bytes) and ``other``."""
    root = tmp_path_factory.mktemp("contract-images")
    records = []
    for cfg, shift in (("ref", 0.0), ("same", 0.0), ("other", 60.0)):
        rng = np.random.default_rng(0)
        for p in range(4):
            for s in range(2):
                path = root / cfg / f"p{p}-{s}.png"
                path.parent.mkdir(exist_ok=True)
                _image(rng, shift).save(path)
                records.append(ImageRecord(cfg, f"p{p}", f"prompt number {p}", s, path))
    return root, records


def _score(name: str, records, cache, **extra):
    options = {**RANDOM_OPTIONS.get(name, {}), **extra}
    return evaluate({name: options}, records, "ref", cache_dir=cache)


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract(name, image_sets, tmp_path):
    spec = METRICS.get(name)
    root, records = image_sets
    rows = {(r.config_id, r.metric): r for r in _score(name, records, root / "cache")}
    main = {cfg: rows.get((cfg, name)) for cfg in ("ref", "same", "other")}
    if spec.against:
        assert main["ref"] is None  # the reference is not scored against itself
        same, other = main["same"].value, main["other"].value
        assert abs(same) <= max(1e-6, 0.1 * abs(other))  # a set against itself: about 0
        assert (other > same) != spec.higher_is_better  # direction: the other set is further away
    for row in rows.values():
        assert spec.name == row.metric or row.metric in {c.name for c in spec.columns()}
        if row.lo is not None:
            assert row.lo <= row.value <= row.hi, f"{row.metric} CI [{row.lo}, {row.hi}] misses {row.value}"
    if spec.per_image:
        row = main["other"]
        mine = [r for r in records if r.config_id == "other"]
        assert set(row.extra["per_image"]) == {f"{r.prompt_id}:{r.seed}" for r in mine}
        assert np.mean(list(row.extra["per_image"].values())) == pytest.approx(row.value, rel=1e-9)
        shuffled = _score(name, mine[::-1] + [r for r in records if r.config_id != "other"], root / "cache")
        again = next(r for r in shuffled if r.config_id == "other" and r.metric == name)
        assert again.extra["per_image"] == pytest.approx(row.extra["per_image"])  # values follow their images


@pytest.mark.parametrize("name", [n for n in METRICS.names() if METRICS.get(n).min_images > 1])
def test_metric_refuses_too_few_images_with_a_reason(name, image_sets):
    root, records = image_sets
    one = [r for r in records if r.config_id == "ref"] + [next(r for r in records if r.config_id == "other")]
    try:
        rows = _score(name, one, root / "cache")
    except UserError as e:
        assert "too few" in str(e) or "at least" in str(e)
        return
    (row,) = [r for r in rows if r.config_id == "other" and r.metric == name]
    assert math.isnan(row.value) and any("too few" in n for n in row.extra["notes"])


def test_fid_trace_forms_agree_with_sqrtm_on_rank_deficient_and_full_rank_statistics():
    from t2ibench.metrics.fid import (fid_from_features, frechet_distance, psd_sqrt, trace_sqrt_cross,
                                      trace_sqrt_product)

    rng = np.random.default_rng(7)
    for n, m, d in ((10, 12, 32), (300, 250, 16)):  # fewer samples than dimensions, then more
        x, y = rng.normal(size=(n, d)), rng.normal(0.3, 1.2, size=(m, d))
        mu_x, mu_y, s_x, s_y = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        reference = frechet_distance(mu_x, s_x, mu_y, s_y)
        cross = fid_from_features(x, y)
        diff = mu_x - mu_y
        rooted = diff @ diff + np.trace(s_x) + np.trace(s_y) - 2 * trace_sqrt_product(x @ psd_sqrt(s_y))
        assert cross == pytest.approx(reference, rel=1e-6)
        assert rooted == pytest.approx(reference, rel=1e-6)
        assert trace_sqrt_cross(x, y) == pytest.approx(trace_sqrt_product(x @ psd_sqrt(s_y)), rel=1e-8)
