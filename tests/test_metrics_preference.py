"""The preference metrics and FD-DINOv2 against hand computations and reference implementations, on tiny
random weights: HPSv2 (normalised image · text features of the open_clip forward), PickScore (its model
card's formula), the aesthetic predictor (its MLP written out), ImageReward (a checkpoint with the original
key names, against BLIP's published architecture written out here) and FD-DINOv2 (dgm-eval's transform,
transformers' Dinov2Model and pytorch-fid's distance)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from t2ibench.errors import UserError
from t2ibench.metrics.evaluate import ImageRecord, evaluate

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
PROMPTS = ["a red cube on a table", "a cat asleep in the sun", "a lighthouse at night, oil painting"]


def _picture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    low = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    return Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[ImageRecord]:
    """3 prompts × 2 seeds of smooth random pictures, not square (so resize and crop matter)."""
    root = tmp_path_factory.mktemp("pref-images")
    rng = np.random.default_rng(1)
    recs = []
    for p, prompt in enumerate(PROMPTS):
        for s in range(2):
            path = root / f"p{p}-{s}.png"
            _picture(rng, (250, 230)).save(path)
            recs.append(ImageRecord("a", f"p{p}", prompt, s, path))
    return recs


def _per_image(metric: str, recs: list[ImageRecord], weights: str, cache: Path | None = None) -> np.ndarray:
    (row,) = [r for r in evaluate({metric: {"weights": weights}}, recs, None, cache_dir=cache) if r.metric == metric]
    assert row.random_weights == weights.startswith("random")
    return np.array([row.extra["per_image"][f"{r.prompt_id}:{r.seed}"] for r in recs])


def _clip_pixels(path: Path) -> torch.Tensor:
    """CLIP's evaluation transform by hand: short side to 224 (PIL bicubic), centre crop 224, mean/std."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 224 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    arr = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float64) / 255.0
    return torch.from_numpy(((arr - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)).float()


# --- HPSv2, PickScore, aesthetic: short formulas -----------------------------------------------------

def test_hpsv2_is_the_dot_product_of_open_clips_normalised_features(images):
    import open_clip

    from t2ibench.metrics import hpsv2

    got = _per_image("hpsv2", images, "random:tiny")
    model = hpsv2._model("tiny", None)
    tokens = open_clip.get_tokenizer("ViT-H-14")([r.prompt for r in images])
    with torch.no_grad():  # HPSv2's score(): outputs = model(image, text); image_features @ text_features.T
        image_features, text_features, _ = model(torch.stack([_clip_pixels(r.path) for r in images]), tokens)
    want = torch.diagonal(image_features @ text_features.T).double().numpy()
    assert np.abs(want).max() > 0 and np.ptp(want) > 1e-4  # not a constant: pairs matter
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_hpsv2_reads_the_checkpoint_format(tmp_path, monkeypatch):
    """HPS_v2.1_compressed.pt: {'state_dict': open_clip CLIP tensors}, possibly with DDP's 'module.' prefix."""
    import open_clip

    from t2ibench.metrics import hpsv2
    from t2ibench.metrics.preference import tiny_open_clip

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: tiny_open_clip())  # ViT-H-14 is too big here
    trained = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
               for k, v in tiny_open_clip().state_dict().items()}
    torch.save({"state_dict": {"module." + k: v for k, v in trained.items()}, "epoch": 3}, tmp_path / hpsv2.FILE)
    hpsv2._model.cache_clear()
    try:
        loaded = hpsv2._model(None, tmp_path / hpsv2.FILE).state_dict()
        assert loaded.keys() == trained.keys()
        assert all(torch.equal(loaded[k], trained[k]) for k in trained)
        torch.save({"state_dict": {k: v for k, v in trained.items() if k != "text_projection"}}, tmp_path / "cut.pt")
        with pytest.raises(UserError, match="missing text_projection"):
            hpsv2._model(None, tmp_path / "cut.pt")
    finally:
        hpsv2._model.cache_clear()


def test_pickscore_is_logit_scale_times_cosine_as_the_model_card(images):
    from t2ibench.metrics import pickscore

    got = _per_image("pickscore", images, "random:tiny")
    model = pickscore._model("tiny", None)
    ids, _ = pickscore._tokenizer(None)([r.prompt for r in images])
    assert ids[0, 0] == 49406 and 49407 in ids[0].tolist()  # CLIP's start and end tokens
    from transformers import CLIPImageProcessor

    # the model card's processor (its config is CLIPImageProcessor's defaults): the same transform as CLIP's,
    # but it rounds the resized size differently, so its crop may sit one pixel off the PIL one
    pixels = CLIPImageProcessor()(images=[Image.open(r.path) for r in images], return_tensors="pt")["pixel_values"]
    by_hand = torch.stack([_clip_pixels(r.path) for r in images])
    assert pixels.shape == by_hand.shape and (pixels - by_hand).abs().mean() < 0.05
    with torch.no_grad():  # the model card, per (prompt, image) pair
        image_embs = pickscore._as_tensor(model.get_image_features(pixel_values=pixels))
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = pickscore._as_tensor(model.get_text_features(input_ids=ids))
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        want = (model.logit_scale.exp() * (text_embs * image_embs).sum(-1)).double().numpy()
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-3)  # CLIP's initial temperature
    assert np.ptp(want) > 1e-3
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def _mlp_by_hand(state: dict, x: torch.Tensor) -> torch.Tensor:
    for i in (0, 2, 4, 6, 7):  # five Linear layers, no activations, dropout off
        x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    return x


def test_aesthetic_is_the_mlp_on_the_normalised_clip_embedding(images):
    from t2ibench.metrics import aesthetic

    got = _per_image("aesthetic", images, "random:tiny")
    clip = aesthetic._tiny_clip()
    head = aesthetic._head("tiny", None, 32).state_dict()
    with torch.no_grad():
        emb = clip.encode_image(torch.stack([_clip_pixels(r.path) for r in images]))
        want = _mlp_by_hand(head, emb / emb.norm(dim=-1, keepdim=True))[:, 0].double().numpy()
    assert np.ptp(want) > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_aesthetic_head_reads_the_original_file_format(tmp_path):
    """sac+logos+ava1-l14-linearMSE.pth: a state dict of layers.{0,2,4,6,7} on 768-d CLIP ViT-L/14 embeddings."""
    from t2ibench.metrics import aesthetic

    g = torch.Generator().manual_seed(3)
    shapes = {0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}
    state = {}
    for i, (o, n) in shapes.items():
        state[f"layers.{i}.weight"] = torch.randn(o, n, generator=g) / math.sqrt(n)
        state[f"layers.{i}.bias"] = torch.randn(o, generator=g)
    path = tmp_path / aesthetic.FILE
    torch.save(state, path)
    head = aesthetic._head(None, path, 768)
    x = torch.randn(5, 768, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(head(x), _mlp_by_hand(state, x))
    torch.save({"layers.0.weight": state["layers.0.weight"]}, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="missing layers.0.bias"):
        aesthetic._head(None, tmp_path / "partial.pth", 768)


# --- ImageReward: the original key names, against BLIP written out ---------------------------------

def _image_reward_checkpoint(width: int = 128, hidden: int = 128, depth: int = 2, layers: int = 2,
                             inter: int = 256, vocab: int = 30524) -> dict:
    """Random tensors under ImageReward.pt's names and shapes (BLIP ViT, BLIP's BertModel, vision/text_proj,
    MLP), at a narrow width; 64-wide heads as in BLIP-large and BERT-base."""
    g = torch.Generator().manual_seed(11)
    shapes: dict[str, tuple] = {
        "blip.visual_encoder.cls_token": (1, 1, width), "blip.visual_encoder.pos_embed": (1, 197, width),
        "blip.visual_encoder.patch_embed.proj.weight": (width, 3, 16, 16),
        "blip.visual_encoder.patch_embed.proj.bias": (width,),
        "blip.visual_encoder.norm.weight": (width,), "blip.visual_encoder.norm.bias": (width,),
        "blip.text_encoder.embeddings.word_embeddings.weight": (vocab, hidden),
        "blip.text_encoder.embeddings.position_embeddings.weight": (512, hidden),
        "blip.text_encoder.embeddings.LayerNorm.weight": (hidden,),
        "blip.text_encoder.embeddings.LayerNorm.bias": (hidden,),
        "blip.vision_proj.weight": (256, width), "blip.vision_proj.bias": (256,),
        "blip.text_proj.weight": (256, hidden), "blip.text_proj.bias": (256,),
    }
    for i in range(depth):
        b = f"blip.visual_encoder.blocks.{i}."
        shapes.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                       b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                       b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                       b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                       b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                       b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,)})
    for i in range(layers):
        b = f"blip.text_encoder.encoder.layer.{i}."
        for att, kv in (("attention", hidden), ("crossattention", width)):
            shapes.update({b + f"{att}.self.query.weight": (hidden, hidden), b + f"{att}.self.query.bias": (hidden,),
                           b + f"{att}.self.key.weight": (hidden, kv), b + f"{att}.self.key.bias": (hidden,),
                           b + f"{att}.self.value.weight": (hidden, kv), b + f"{att}.self.value.bias": (hidden,),
                           b + f"{att}.output.dense.weight": (hidden, hidden),
                           b + f"{att}.output.dense.bias": (hidden,),
                           b + f"{att}.output.LayerNorm.weight": (hidden,),
                           b + f"{att}.output.LayerNorm.bias": (hidden,)})
        shapes.update({b + "intermediate.dense.weight": (inter, hidden), b + "intermediate.dense.bias": (inter,),
                       b + "output.dense.weight": (hidden, inter), b + "output.dense.bias": (hidden,),
                       b + "output.LayerNorm.weight": (hidden,), b + "output.LayerNorm.bias": (hidden,)})
    for i, (o, n) in {0: (1024, hidden), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}.items():
        shapes.update({f"mlp.layers.{i}.weight": (o, n), f"mlp.layers.{i}.bias": (o,)})
    state = {}
    for k, shape in shapes.items():
        fan_in = shape[-1] if len(shape) == 2 else (math.prod(shape[1:]) if len(shape) == 4 else 1)
        t = torch.randn(shape, generator=g)
        t = t / math.sqrt(fan_in) if len(shape) > 1 else 0.1 * t
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight", "LayerNorm.weight")):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        state[k] = t
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(512).expand(1, -1)  # a buffer it also holds
    return state


def _attend(q, k, v, heads: int, mask=None):
    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, -1, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
    a = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        a = a + mask
    return (a.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, n, c)


def _blip_reward_by_hand(s: dict, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ImageReward.score(): BLIP ViT (pre-norm, LayerNorm eps 1e-6) → image tokens; BLIP's BertModel in its
    multimodal mode (post-norm, eps 1e-12, padding masked with −10000, cross-attention to every image token)
    → [CLS] → MLP → (r − mean) / std."""
    def lin(x, name):
        return x @ s[name + ".weight"].T + s[name + ".bias"]

    def ln(x, name, eps):
        return F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], eps)

    v = "blip.visual_encoder."
    width = s[v + "pos_embed"].shape[-1]
    x = F.conv2d(pixels, s[v + "patch_embed.proj.weight"], s[v + "patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s[v + "cls_token"].expand(len(x), -1, -1), x], 1) + s[v + "pos_embed"]
    i = 0
    while f"{v}blocks.{i}.norm1.weight" in s:
        b = f"{v}blocks.{i}."
        qkv = lin(ln(x, b + "norm1", 1e-6), b + "attn.qkv")
        x = x + lin(_attend(*qkv.split(width, -1), heads=width // 64), b + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, b + "norm2", 1e-6), b + "mlp.fc1")), b + "mlp.fc2")
        i += 1
    image = ln(x, v + "norm", 1e-6)

    t = "blip.text_encoder."
    hidden = s[t + "embeddings.word_embeddings.weight"].shape[1]
    h = s[t + "embeddings.word_embeddings.weight"][ids] + s[t + "embeddings.position_embeddings.weight"][:ids.shape[1]]
    h = ln(h, t + "embeddings.LayerNorm", 1e-12)
    pad = (1.0 - mask[:, None, None, :].float()) * -10000.0
    i = 0
    while f"{t}encoder.layer.{i}.intermediate.dense.weight" in s:
        b = f"{t}encoder.layer.{i}."
        for att, kv, m in (("attention", None, pad), ("crossattention", image, None)):
            src = h if kv is None else kv
            ctx = _attend(lin(h, b + f"{att}.self.query"), lin(src, b + f"{att}.self.key"),
                          lin(src, b + f"{att}.self.value"), heads=hidden // 64, mask=m)
            h = ln(lin(ctx, b + f"{att}.output.dense") + h, b + f"{att}.output.LayerNorm", 1e-12)
        h = ln(lin(F.gelu(lin(h, b + "intermediate.dense")), b + "output.dense") + h, b + "output.LayerNorm", 1e-12)
        i += 1
    r = h[:, 0]
    for k in (0, 2, 4, 6, 7):
        r = lin(r, f"mlp.layers.{k}")
    return (r[:, 0] - 0.16717362830052426) / 1.0333394966054072


def test_image_reward_loads_the_original_key_names_and_matches_blip_written_out(images, tmp_path):
    from transformers import BertTokenizer

    from t2ibench.metrics import image_reward

    state = _image_reward_checkpoint()
    weights = tmp_path / "ImageReward.pt"
    torch.save(state, weights)
    (tmp_path / "vocab.txt").write_text(image_reward._stand_in_vocab().read_text())  # beside the weights
    got = _per_image("image_reward", images, str(weights))

    tok = BertTokenizer(vocab_file=str(tmp_path / "vocab.txt"))
    enc = tok([r.prompt for r in images], padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # padding is there, and masked
    with torch.no_grad():
        want = _blip_reward_by_hand(state, torch.stack([_clip_pixels(r.path) for r in images]),
                                    enc["input_ids"], enc["attention_mask"]).double().numpy()
    assert np.ptp(want) > 1e-4
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    del state["blip.text_encoder.encoder.layer.1.crossattention.self.key.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(UserError, match="crossattention.self.key.weight"):
        image_reward._model(None, tmp_path / "broken.pt")


def test_image_reward_caches_pair_scores_so_a_rerun_runs_no_network(images, tmp_path, monkeypatch):
    from t2ibench.metrics import image_reward

    first = _per_image("image_reward", images, "random:tiny", tmp_path / "cache")
    model = image_reward._model("tiny", None)
    monkeypatch.setattr(type(model), "forward", lambda *a, **k: pytest.fail("the network ran on cached pairs"))
    np.testing.assert_array_equal(_per_image("image_reward", images, "random:tiny", tmp_path / "cache"), first)
    swapped = [ImageRecord(r.config_id, r.prompt_id, PROMPTS[0] if r.prompt != PROMPTS[0] else PROMPTS[1], r.seed,
                           r.path) for r in images]
    with pytest.raises(pytest.fail.Exception):  # another prompt for the same image is another pair
        _per_image("image_reward", swapped, "random:tiny", tmp_path / "cache")


# --- FD-DINOv2 -------------------------------------------------------------------------------------

def _dgm_eval_transform(path: Path) -> torch.Tensor:
    """dgm-eval: Image.open(path).convert('RGB'); Resize((224, 224), BICUBIC); ToTensor; Normalize(ImageNet)."""
    import torchvision.transforms as TF

    img = Image.open(path).convert("RGB")
    x = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])(img)
    return TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))(x)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_dinov2_preprocessing_is_dgm_evals_on_odd_sizes_and_modes(mode, tmp_path):
    from t2ibench.metrics.images import load_rgb
    from t2ibench.metrics.networks import load_features

    rng = np.random.default_rng(5)
    ext = load_features("random:tiny-dinov2")
    for size in ((37, 53), (301, 97), (224, 224)):
        arr = (rng.random((size[1], size[0], 4)) * 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGBA").convert(mode) if mode != "P" else \
            Image.fromarray(arr[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE)
        path = tmp_path / f"{mode}-{size[0]}x{size[1]}.png"
        img.save(path)
        assert Image.open(path).mode == mode
        ours = ext.preprocess(load_rgb(path))
        assert ours.shape == (3, 224, 224)
        torch.testing.assert_close(ours, _dgm_eval_transform(path).float(), rtol=0, atol=1e-5)


def test_dinov2_module_matches_transformers_dinov2_and_reads_its_checkpoint(tmp_path):
    """A transformers Dinov2Model's weights (HF names) load through the key mapping, and the CLS feature equals
    its pooler output (final LayerNorm of the CLS token) at 518², where no position resampling happens."""
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    from t2ibench.metrics import fd_dinov2

    cfg = Dinov2Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                       image_size=518, patch_size=14, layerscale_value=0.5, hidden_act="gelu", layer_norm_eps=1e-6)
    torch.manual_seed(0)
    hf = Dinov2Model(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))  # every tensor, layer scales included, away from its init
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    fd_dinov2._model.cache_clear()
    ext = fd_dinov2.extractor(None, weights=str(path))
    assert ext.key.startswith("dinov2|resize=dgm-eval224|w=") and not ext.random_weights
    x = torch.randn(2, 3, 518, 518)
    with torch.no_grad():
        torch.testing.assert_close(ext.module(x), hf(pixel_values=x).pooler_output, rtol=1e-4, atol=1e-4)
        small = ext.module(torch.randn(2, 3, 224, 224))
    assert small.shape == (2, 128) and torch.isfinite(small).all()


def test_dinov2_position_resampling_is_dinov2s():
    """DINOv2's interpolate_pos_encoding: (N + 0.1)/M scale factors, bicubic, no antialias; a 37² grid to 16²."""
    from t2ibench.metrics.fd_dinov2 import interpolate_pos_embed

    g = torch.Generator().manual_seed(2)
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=g)
    out = interpolate_pos_embed(pos, 16, 16)
    assert out.shape == (1, 1 + 256, 8) and torch.equal(out[:, 0], pos[:, 0])
    # bicubic sampling at DINOv2's source coordinates: (i + 0.5) / s − 0.5 with s = 16.1 / 37
    grid = pos[0, 1:].reshape(37, 37, 8).permute(2, 0, 1)[None]
    s = 16.1 / 37
    coords = (torch.arange(16) + 0.5) / s - 0.5
    norm = (coords + 0.5) / 37 * 2 - 1  # align_corners=False normalisation
    gy, gx = torch.meshgrid(norm, norm, indexing="ij")
    want = F.grid_sample(grid, torch.stack([gx, gy], -1)[None], mode="bicubic", padding_mode="border",
                         align_corners=False)
    torch.testing.assert_close(out[0, 1:].reshape(16, 16, 8).permute(2, 0, 1), want[0], rtol=1e-4, atol=1e-4)
    assert interpolate_pos_embed(pos, 37, 37) is pos


def test_fd_dinov2_equals_pytorch_fids_distance_on_the_same_features(tmp_path):
    from pytorch_fid.fid_score import calculate_frechet_distance

    from t2ibench.metrics.networks import load_features

    rng = np.random.default_rng(9)
    recs = []
    for cfg, size in (("ref", (64, 64)), ("cand", (80, 60))):
        for i in range(40):
            path = tmp_path / cfg / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            _picture(rng, size).save(path)
            recs.append(ImageRecord(cfg, f"p{i}", "x", 0, path))
    (row,) = evaluate({"fd_dinov2": {"weights": "random:tiny"}}, recs, "ref", cache_dir=None, ci=False)
    ext = load_features("random:tiny-dinov2")
    feats = {c: ext.features([r.path for r in recs if r.config_id == c]).astype(np.float64) for c in ("ref", "cand")}
    assert feats["ref"].shape == (40, 32)
    want = calculate_frechet_distance(feats["cand"].mean(0), np.cov(feats["cand"], rowvar=False),
                                      feats["ref"].mean(0), np.cov(feats["ref"], rowvar=False))
    assert want > 0
    assert row.value == pytest.approx(want, rel=1e-4)
    assert row.random_weights and any("random weights" in n for n in row.extra["notes"])


# --- weights ---------------------------------------------------------------------------------------

def test_weights_specs_and_missing_files_are_one_line_errors(tmp_path, monkeypatch):
    from t2ibench.metrics import aesthetic, fd_dinov2, hpsv2, image_reward, pickscore
    from t2ibench.metrics.preference import random_kind

    assert (random_kind("random"), random_kind("random:tiny"), random_kind(None), random_kind("x.pt")) == \
        ("full", "tiny", None, None)
    with pytest.raises(UserError, match="random:tiny"):
        random_kind("random:huge")
    monkeypatch.setenv("T2IBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("T2IBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for module, name in ((hpsv2, "HPS_v2.1_compressed.pt"), (image_reward, "ImageReward.pt"),
                         (aesthetic, "sac+logos+ava1-l14-linearMSE.pth"), (fd_dinov2, "dinov2_vitl14_pretrain.pth"),
                         (pickscore, "yuvalkirstain/PickScore_v1")):
        with pytest.raises(UserError) as e:
            module.find_weights()
        assert name in str(e.value) and "\n" not in str(e.value) and "random" in str(e.value)
    with pytest.raises(UserError, match="does not exist"):
        hpsv2.find_weights(str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        image_reward.find_weights("THUDM/ImageReward")
    (tmp_path / "ImageReward.pt").write_bytes(b"")
    assert image_reward.find_weights() == tmp_path / "ImageReward.pt"  # $T2IBENCH_WEIGHTS
