"""The upscale stage: "generate small, then upscale", for every backend.

``upscale:`` is a common knob. Its stage runs after the engine's call, on the images the engine
returned (HxWx3 uint8), inside the timed call: :meth:`UpscaleStage.apply` adds ``upscale_ms`` to the
call's timing, so that ``encode_ms + denoise_ms + decode_ms + upscale_ms == latency_ms`` (what a user
waits for is the upscaled image). The upscaled image is the one saved and scored.

Three kinds of upscaler (:data:`UPSCALERS`, heavy imports inside each):

- ``{method: lanczos|bicubic, scale: 2}``: PIL resampling, the baseline;
- ``{model: file.pth|.safetensors}``: a super-resolution checkpoint (ESRGAN, SwinIR, …) read with
  spandrel, which tells the architecture and its native scale from the weights;
- ``{model: hub id | folder}``: a diffusers upscaling pipeline (``stabilityai/sd-x2-latent-upscaler``,
  ``stabilityai/stable-diffusion-x4-upscaler``), given the prompt and a per-image seeded generator. It
  receives the decoded image (re-encoded by its own VAE), so it works after any backend.

A model whose native scale differs from ``scale`` is followed by a Lanczos resize to ``scale``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Protocol, get_args

from pydantic import Field, model_serializer, model_validator

from t2ibench.base import Frozen
from t2ibench.errors import SkipConfig, UserError

MethodName = Literal["lanczos", "bicubic"]
METHODS: tuple[str, ...] = get_args(MethodName)  # PIL resampling filters
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".safetensors", ".ckpt")
# the diffusers pipelines that upscale, and their native scale
DIFFUSERS_UPSCALERS: dict[str, int] = {"StableDiffusionLatentUpscalePipeline": 2, "StableDiffusionUpscalePipeline": 4}


class UpscaleOptions(Frozen):
    """``upscale: {method: lanczos, scale: 2}`` or ``{model: SPEC, scale: 2}``; ``none`` is off.

    ``scale``: output size ÷ generated size (default 2 for a method, the model's native scale for a model).
    ``steps`` and ``guidance_scale``: a diffusers upscaler's own (its pipeline's defaults when unset).
    """

    method: Optional[MethodName] = None
    model: Optional[str] = Field(None, min_length=1)
    scale: Optional[float] = Field(None, ge=1, le=8)
    steps: Optional[int] = Field(None, gt=0, le=1000)
    guidance_scale: Optional[float] = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _method_scale(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method") is not None and data.get("scale") is None:
            return {**data, "scale": 2}  # {method: lanczos} and {method: lanczos, scale: 2} are one config
        return data

    @model_validator(mode="after")
    def _one_upscaler(self) -> "UpscaleOptions":
        if (self.method is None) == (self.model is None):
            raise ValueError("upscale needs exactly one of 'method' (lanczos, bicubic) or 'model' (a spec)")
        if self.kind != "diffusers" and (self.steps is not None or self.guidance_scale is not None):
            raise ValueError("upscale 'steps' and 'guidance_scale' are for a diffusers upscaler (a hub id or folder)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        # unset options are left out, so that an option added later keeps every config_id
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def kind(self) -> str:
        """``pil`` (a method), ``spandrel`` (a checkpoint file) or ``diffusers`` (a hub id or folder)."""
        if self.method is not None:
            return "pil"
        return "spandrel" if self.model.lower().endswith(CHECKPOINT_SUFFIXES) else "diffusers"


def check_options(options: UpscaleOptions) -> Optional[str]:
    """What can be told without loading: a checkpoint file or a folder that does not exist (None when fine)."""
    if options.kind == "pil":
        return None
    path = Path(options.model).expanduser()
    if options.kind == "spandrel" and not path.is_file():
        return f"upscale model file '{options.model}' does not exist"
    if options.kind == "diffusers" and options.model.startswith((".", "/", "~")) and not path.is_dir():
        return f"upscale model folder '{options.model}' does not exist"
    return None


def _dtype(precision: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


class Upscaler(Protocol):
    """A loaded upscaler: ``native_scale`` (None: any scale), what was observed of it, and a call on a
    batch of HxWx3 uint8 images that returns them at ``size`` (width, height), or at its native scale."""

    native_scale: Optional[int]
    applied: dict

    def __call__(self, images: list, size: tuple[int, int], prompts: list[str], seeds: list[int]) -> list: ...


class PilUpscaler:
    """PIL resampling (``Image.resize``) to the stage's output size."""

    native_scale = None

    def __init__(self, options: UpscaleOptions, device: str, precision: str):
        from PIL import Image

        self.resample = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}[options.method]
        self.applied = {"method": options.method}

    def __call__(self, images: list, size: tuple[int, int], prompts: list[str], seeds: list[int]) -> list:
        return [resize(img, size, self.resample) for img in images]


class SpandrelUpscaler:
    """A super-resolution checkpoint read with spandrel (architecture and scale detected from the weights)."""

    def __init__(self, options: UpscaleOptions, device: str, precision: str):
        import importlib.util

        import torch

        if importlib.util.find_spec("spandrel") is None:
            raise SkipConfig("upscale with a checkpoint file needs the spandrel package (pip install 't2ibench[upscale]')")
        import spandrel

        path = options.model
        try:
            descriptor = spandrel.ModelLoader().load_from_file(path)
        except spandrel.UnsupportedModelError:
            raise UserError(f"upscale model file '{path}': spandrel does not recognise its architecture") from None
        except (OSError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot read upscale model file '{path}': {str(e).splitlines()[0]}") from e
        if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3:
            raise UserError(f"upscale model file '{path}' is not an RGB image-to-image model")
        dtype = _dtype(precision)
        if (dtype is torch.float16 and not descriptor.supports_half) or \
                (dtype is torch.bfloat16 and not descriptor.supports_bfloat16):
            dtype = torch.float32  # the architecture does not run in that precision: recorded in applied
        self.descriptor = descriptor.to(device=torch.device(device), dtype=dtype).eval()
        self.device, self.dtype = torch.device(device), dtype
        self.native_scale = int(descriptor.scale)
        self.applied = {"model": path, "architecture": descriptor.architecture.name, "native_scale": self.native_scale,
                        "dtype": str(dtype).removeprefix("torch.")}

    def __call__(self, images: list, size: tuple[int, int], prompts: list[str], seeds: list[int]) -> list:
        import numpy as np
        import torch

        out = []
        for img in images:  # spandrel's call takes one image, (1, 3, H, W) in [0, 1]
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
            y = self.descriptor(x.to(self.device, self.dtype) / 255.0)
            out.append((y[0].permute(1, 2, 0).float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy())
        return out


class DiffusersUpscaler:
    """A diffusers upscaling pipeline (hub id or save_pretrained folder), run with the call's prompts and seeds."""

    def __init__(self, options: UpscaleOptions, device: str, precision: str):
        import os

        from diffusers import DiffusionPipeline

        spec = options.model
        dtype = _dtype(precision)
        try:
            pipe = DiffusionPipeline.from_pretrained(spec, dtype=dtype)
        except OSError as e:
            if Path(spec).expanduser().is_dir():
                raise UserError(f"cannot load upscale model '{spec}': {str(e).splitlines()[0]}") from e
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
            why = "HF_HUB_OFFLINE is set" if offline else "it could not be downloaded"
            raise UserError(f"upscale model '{spec}' is not in the Hugging Face cache and {why}; fetch it with "
                            f"`hf download {spec}` on a connected machine, or give a local save_pretrained "
                            "folder") from e
        name = type(pipe).__name__
        if name not in DIFFUSERS_UPSCALERS:
            raise UserError(f"upscale model '{spec}' is a {name}, not an upscaler "
                            f"({', '.join(DIFFUSERS_UPSCALERS)})")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)
        self.native_scale = DIFFUSERS_UPSCALERS[name]
        self.kwargs = {k: v for k, v in (("num_inference_steps", options.steps),
                                         ("guidance_scale", options.guidance_scale)) if v is not None}
        self.applied = {"model": spec, "pipeline": name, "native_scale": self.native_scale,
                        "dtype": str(dtype).removeprefix("torch."), **self.kwargs}

    def __call__(self, images: list, size: tuple[int, int], prompts: list[str], seeds: list[int]) -> list:
        import torch
        from PIL import Image

        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]  # paired, as the generation
        with torch.inference_mode():
            out = self.pipe(prompt=list(prompts), image=[Image.fromarray(i) for i in images], generator=generators,
                            output_type="np", **self.kwargs).images
        return [(img * 255).round().clip(0, 255).astype("uint8") for img in out]


UPSCALERS: dict[str, Callable[[UpscaleOptions, str, str], Upscaler]] = {
    "pil": PilUpscaler, "spandrel": SpandrelUpscaler, "diffusers": DiffusersUpscaler,
}
"""The upscaler kinds (:attr:`UpscaleOptions.kind`) → ``factory(options, device, precision)``."""


def resize(pixels, size: tuple[int, int], resample: Any = None):
    """HxWx3 uint8 ``pixels`` resized to ``size`` (width, height) with PIL (Lanczos unless ``resample``)."""
    import numpy as np
    from PIL import Image

    resample = Image.Resampling.LANCZOS if resample is None else resample
    return np.asarray(Image.fromarray(pixels).resize(size, resample))


class UpscaleStage:
    """The upscale stage of one config: its upscaler, applied to every call's ok images."""

    def __init__(self, options: UpscaleOptions, upscaler: Upscaler, prompt_suffix: str = ""):
        self.options = options
        self.upscaler = upscaler
        self.prompt_suffix = prompt_suffix
        self.scale = options.scale if options.scale is not None else float(upscaler.native_scale)
        self.applied = dict(upscaler.applied, scale=self.scale)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the upscaled image of a ``width`` × ``height`` one."""
        return round(width * self.scale), round(height * self.scale)

    def _upscale(self, images: list, prompts: list[str], seeds: list[int]) -> list:
        h, w = images[0].shape[:2]
        size = self.output_size(w, h)
        out = self.upscaler(images, size, [p + self.prompt_suffix for p in prompts], seeds)
        return [img if img.shape[1::-1] == size else resize(img, size) for img in out]

    def apply(self, outcome, prompts: list[str], seeds: list[int]):
        """``outcome`` (a CallOutcome) with its ok images upscaled and ``upscale_ms`` added to its latency."""
        from t2ibench.backends.engine import ImageOutcome

        ok = [i for i, image in enumerate(outcome.images) if image.status == "ok"]
        t0 = time.perf_counter()  # the images are on the host: the stage's output is, too, so no sync is needed
        upscaled = self._upscale([outcome.images[i].pixels for i in ok], [prompts[i] for i in ok],
                                 [seeds[i] for i in ok]) if ok else []
        upscale_ms = (time.perf_counter() - t0) * 1000.0
        images = list(outcome.images)
        for i, pixels in zip(ok, upscaled):
            images[i] = ImageOutcome("ok", pixels)
        timing = replace(outcome.timing, latency_ms=outcome.timing.latency_ms + upscale_ms, upscale_ms=upscale_ms)
        return replace(outcome, images=images, timing=timing)

    def warmup(self, n_images: int, width: int, height: int) -> float:
        """One untimed upscale of ``n_images`` mid-grey images of the generated size; returns its wall time in ms."""
        import numpy as np

        t0 = time.perf_counter()
        grey = np.full((height, width, 3), 128, np.uint8)
        self._upscale([grey] * n_images, [""] * n_images, list(range(n_images)))
        return (time.perf_counter() - t0) * 1000.0


class Upscalers:
    """The upscalers one worker has loaded on its device, shared by the configs that name the same one."""

    def __init__(self, device: str):
        self.device = device
        self._loaded: dict[tuple, Upscaler] = {}

    def stage(self, options: UpscaleOptions, precision: str, prompt_suffix: str = "") -> UpscaleStage:
        """The stage of a config (loads its upscaler the first time; raises UserError for a missing model)."""
        problem = check_options(options)
        if problem:
            raise UserError(problem)
        what = options.method if options.kind == "pil" else options.model
        key = (options.kind, what, options.steps, options.guidance_scale, precision)
        if key not in self._loaded:
            t0 = time.perf_counter()
            upscaler = UPSCALERS[options.kind](options, self.device, precision)
            upscaler.applied["load_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
            self._loaded[key] = upscaler
        return UpscaleStage(options, self._loaded[key], prompt_suffix)

    def close(self) -> None:
        """Drop every loaded upscaler (at the end of a load group), and the device memory it held."""
        if not self._loaded:
            return
        self._loaded.clear()
        import gc
        import sys

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and self.device.startswith("cuda"):
            torch.cuda.empty_cache()
