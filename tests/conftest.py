"""Shared test helpers: small suites written to a temporary folder."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("T2IBENCH_OFFLINE", "1")

TINY_PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a cat in sunglasses"]


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    """The export engines' cache (OpenVINO IR, ONNX files) lives in a temporary folder for the session: each
    tiny pipeline is exported once per session, and nothing is written to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("T2IBENCH_CACHE", str(tmp_path_factory.mktemp("t2ibench-cache")))
        yield


def suite_dict(**overrides) -> dict:
    suite = {
        "name": "t",
        "model": "random:tiny-sd",
        "prompts": list(TINY_PROMPTS),
        "seeds": [0, 1],
        "defaults": {"steps": 3, "width": 64, "height": 64, "guidance_scale": 5.0},
        "timing": {"warmup": 1, "repeats": 1},
    }
    suite.update(overrides)
    return {k: v for k, v in suite.items() if v is not None}


@pytest.fixture
def write_suite(tmp_path: Path):
    """``write_suite(name="x", matrix={...})`` → path of a suite YAML in tmp_path."""

    def write(filename: str = "suite.yaml", **overrides) -> Path:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(suite_dict(**overrides), sort_keys=False))
        return path

    return write


@dataclass
class Observed:
    """The pipeline's state during one timed call of one config."""

    knobs: Any  # t2ibench.suites.knobs.Knobs
    scheduler: Any
    processors: collections.Counter
    vae_processors: collections.Counter
    unet_dtype: Any
    vae_dtype: Any
    unet_channels_last: bool
    unet_contiguous: bool
    vae_channels_last: bool
    vae_cls: str
    vae_slicing: bool
    vae_tiling: bool
    sdpa: list = field(default_factory=list)  # the backend torch selects at each SDPA call
    decoder_input_dtypes: list = field(default_factory=list)
    tf32: bool = False  # torch.backends.cuda.matmul.allow_tf32 during the call
    unet_device: str = ""  # where the UNet's weights sit when the call starts
    offload_hooks: bool = False  # accelerate hooks on the UNet


@pytest.fixture
def observed(monkeypatch) -> list[Observed]:
    """Records, for each timed call, the pipeline state (:class:`Observed`) it ran with."""
    import torch
    from torch.nn.attention import SDPBackend

    from t2ibench.backends.torch.engine import TorchModel

    calls: list[Observed] = []
    real_call, real_sdpa = TorchModel._call, torch.nn.functional.scaled_dot_product_attention

    def call(self, prompts, seeds, knobs):
        pipe, unet = self.pipe, self.pipe.unet
        weight = unet.conv_in.weight
        calls.append(Observed(
            knobs=knobs, scheduler=pipe.scheduler,
            processors=collections.Counter(type(p).__name__ for p in unet.attn_processors.values()),
            vae_processors=collections.Counter(type(p).__name__ for p in getattr(pipe.vae, "attn_processors", {}).values()),
            unet_dtype=weight.dtype, vae_dtype=next(pipe.vae.parameters()).dtype,
            unet_channels_last=weight.is_contiguous(memory_format=torch.channels_last),
            unet_contiguous=weight.is_contiguous(),
            vae_channels_last=next(p for p in pipe.vae.decoder.parameters() if p.dim() == 4 and p.shape[-1] > 1)
            .is_contiguous(memory_format=torch.channels_last),
            vae_cls=type(pipe.vae).__name__, vae_slicing=pipe.vae.use_slicing, vae_tiling=pipe.vae.use_tiling,
            tf32=torch.backends.cuda.matmul.allow_tf32, unet_device=weight.device.type,
            offload_hooks=hasattr(unet, "_hf_hook"),
        ))
        hook = pipe.vae.decoder.register_forward_pre_hook(
            lambda module, args: calls[-1].decoder_input_dtypes.append(args[0].dtype))
        try:
            return real_call(self, prompts, seeds, knobs)
        finally:
            hook.remove()

    def sdpa(*args, **kwargs):  # diffusers passes query/key/value by position or by name
        if calls:
            calls[-1].sdpa.append(SDPBackend(torch._fused_sdp_choice(*args, **kwargs)))
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(TorchModel, "_call", call)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    return calls


@pytest.fixture
def fail_scheduler(monkeypatch):
    """``fail_scheduler("ddim", "simulated driver failure")``: every timed call of that scheduler's configs
    raises ``RuntimeError(message)``; the other configs generate as usual."""
    from t2ibench.backends.torch.engine import TorchModel

    real = TorchModel.generate

    def install(scheduler: str, message: str) -> None:
        def generate(self, prompts, seeds, knobs):
            if knobs.scheduler == scheduler:
                raise RuntimeError(message)
            return real(self, prompts, seeds, knobs)

        monkeypatch.setattr(TorchModel, "generate", generate)

    return install
