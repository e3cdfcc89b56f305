"""The PyTorch/diffusers backend: loads a pipeline once per load key, applies runtime knobs per
config (and undoes them for the next), and runs timed calls with paired initial latents."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2ibench.errors import SkipConfig
from t2ibench.backends.engine import CallOutcome, ImageOutcome, ProfiledOp
from t2ibench.backends.torch.loading import ModelSpec, load_pipeline, torch_dtype
from t2ibench.backends.torch.options import DISPATCHER_ATTENTION, compile_options
from t2ibench.backends.memory import MemoryTracker
from t2ibench.backends.torch.schedulers import build_scheduler
from t2ibench.backends.timing import CallTimer

if TYPE_CHECKING:
    from t2ibench.backends.common import ConfigKnobs as Knobs


def initial_latents(seeds: list[int], shape: tuple[int, ...], dtype):
    """Paired noise: one CPU generator per image seeded with its seed, drawn in float32.

    Returns the latents and the generators (advanced past the draw, as diffusers leaves them),
    so that ancestral schedulers take their further noise from the same per-image stream.
    """
    import torch

    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    noise = torch.cat([torch.randn((1, *shape), generator=g, dtype=torch.float32) for g in gens])
    return noise.to(dtype), gens


def _to_uint8(images) -> list[ImageOutcome]:
    import numpy as np

    out = []
    for img in images:  # HxWx3 float in [0, 1]
        if not np.isfinite(img).all():
            out.append(ImageOutcome("nan", None, "non-finite pixels"))
        elif float(img.max()) <= 0.0:
            out.append(ImageOutcome("nan", None, "all-black image"))
        else:
            out.append(ImageOutcome("ok", (img * 255).round().clip(0, 255).astype("uint8")))
    return out


class TorchModel:
    """One loaded diffusers pipeline plus the undo state of the runtime knobs."""

    def __init__(self, pipe, spec: ModelSpec, device: str, precision: str, load_facts: dict | None = None):
        import inspect

        self.pipe = pipe
        self.load_facts = dict(load_facts or {})  # what was observed of the load-time knobs (part of `applied`)
        self.spec = spec
        self.device = device
        self.cuda = device.startswith("cuda")
        self.dtype = torch_dtype(precision)
        self.memory = MemoryTracker(self.cuda)
        self.timer = CallTimer(self.cuda)
        self.denoiser_attr = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
        self._original_denoiser = getattr(pipe, self.denoiser_attr)
        self._original_scheduler = pipe.scheduler
        # every component's attention processors (sliced/xformers also reach the VAE), restored per config
        self._original_processors = {
            name: dict(module.attn_processors) for name, module in pipe.components.items()
            if hasattr(module, "attn_processors") and hasattr(module, "set_attn_processor")
        }
        self._compiled: dict[tuple, Any] = {}
        self._embedding_cache: dict[tuple, Any] = {}
        self._hook = None
        self._attention_ctx = contextlib.nullcontext
        self._undo: list = []  # undo steps of the per-config knobs (cache, lora, dispatcher, regional compile)
        self._cache = None  # the config's ActiveCache (caching.py)
        self._lora = None  # LoraManager, made at the first config with LoRA
        self._observe_dispatch = None  # (knob, applied dict): the first call records the backend really called
        params = inspect.signature(pipe.__call__).parameters
        self._step_callback = ("callback_on_step_end" if "callback_on_step_end" in params
                               else "callback" if "callback" in params else None)
        # Flux packs its latents into patch tokens: it gets per-image generators instead (same pairing)
        self._accepts_latents = "latents" in params and "Flux" not in type(pipe).__name__
        # PixArt: generate at exactly width × height, and pass the prompt text verbatim
        self._fixed_kwargs = {k: False for k in ("use_resolution_binning", "clean_caption") if k in params}
        self._matmul_tf32 = _matmul_tf32() if self.cuda else None  # restored at close
        self._install_hook()

    # -- knobs -----------------------------------------------------------------------------------
    @property
    def denoiser(self):
        return getattr(self.pipe, self.denoiser_attr)

    def _install_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._hook = self.denoiser.register_forward_pre_hook(self.timer.denoiser_called)

    def _reset(self) -> None:
        """Undo the previous config's runtime knobs, last applied first: the pipeline is as loaded."""
        while self._undo:
            self._undo.pop()()
        self._cache = None
        self._observe_dispatch = None
        self._install_hook()

    def configure(self, knobs: Knobs) -> dict:
        """Apply the config's runtime knobs; returns ``applied``, what was observed of them (the dispatcher
        backend really called is added to it by the config's first call, before the worker stores it).

        Every runtime knob is one ``_apply_…(knobs, applied)`` that changes the pipeline and returns the
        function that undoes exactly that change (None when it changed nothing); the undos run at the
        next ``configure``, so configure(A), configure(B), configure(A) gives A's pixels (a contract test).
        A knob that raises SkipConfig midway leaves the undos of those applied before it.
        """
        self._reset()
        applied: dict = {}
        for apply in (self._apply_tf32, self._apply_scheduler, self._apply_attention, self._apply_lora,
                      self._apply_channels_last, self._apply_vae_slicing, self._apply_vae_tiling,
                      self._apply_vae_upcast, self._apply_text_embedding_cache, self._apply_cache,
                      self._apply_compile):
            undo = apply(knobs, applied)
            if undo is not None:
                self._undo.append(undo)
        applied.update({k: v for k, v in self.load_facts.items() if k not in applied})
        return applied  # the same dict: the first call completes it (the attention backend really called)

    def _apply_tf32(self, knobs: Knobs, applied: dict):
        import torch

        if knobs.options.tf32 and not self.cuda:
            raise SkipConfig("tf32 needs a CUDA device")
        if not self.cuda:
            return None
        before = torch.backends.cuda.matmul.allow_tf32  # TF32 matmuls; cuDNN convolutions keep torch's default
        torch.backends.cuda.matmul.allow_tf32 = knobs.options.tf32

        def undo():
            torch.backends.cuda.matmul.allow_tf32 = before
        return undo

    def _apply_scheduler(self, knobs: Knobs, applied: dict):
        if not knobs.scheduler:
            return None
        self.pipe.scheduler = build_scheduler(knobs.scheduler, self._original_scheduler)
        return lambda: setattr(self.pipe, "scheduler", self._original_scheduler)

    def _restore_processors(self) -> None:
        for name, processors in self._original_processors.items():
            self.pipe.components[name].set_attn_processor(dict(processors))

    def _apply_attention(self, knobs: Knobs, applied: dict):
        import importlib.util

        from torch.nn.attention import SDPBackend, sdpa_kernel

        attention = knobs.options.attention
        if attention == "sliced":
            self.pipe.enable_attention_slicing()
            if not any("Sliced" in type(p).__name__ for p in self._original_denoiser.attn_processors.values()):
                self._restore_processors()
                raise SkipConfig(f"attention 'sliced' has no sliced processor for "
                                 f"{type(self._original_denoiser).__name__}")
            return self._restore_processors
        if attention == "xformers":
            if importlib.util.find_spec("xformers") is None:
                raise SkipConfig("attention 'xformers' needs the xformers package (pip install 't2ibench[xformers]')")
            self.pipe.enable_xformers_memory_efficient_attention()
            return self._restore_processors
        if attention in ("math", "flash", "efficient"):
            if attention != "math" and not self.cuda:
                raise SkipConfig(f"attention '{attention}' needs a CUDA device")
            backend = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                       "efficient": SDPBackend.EFFICIENT_ATTENTION}[attention]
            self._attention_ctx = lambda: sdpa_kernel([backend])
            return lambda: setattr(self, "_attention_ctx", contextlib.nullcontext)
        if attention in DISPATCHER_ATTENTION:
            from t2ibench.backends.torch.attention import observe_dispatch, set_dispatcher_backend

            restore = set_dispatcher_backend(attention, self.denoiser, self.cuda)
            # the dispatcher's backend functions stay wrapped (a counter) for the whole config, so that a
            # compiled graph's guards on them hold; the first call's counts are checked and recorded
            stack, seen = contextlib.ExitStack(), {}
            stack.enter_context(observe_dispatch(seen))
            applied["attention"] = {"knob": attention, "backend": None}  # filled in by the first call
            self._observe_dispatch = (attention, applied, seen)

            def undo():
                stack.close()
                restore()
            return undo
        return None  # sdpa: torch's default choice of kernel

    def _apply_lora(self, knobs: Knobs, applied: dict):
        from t2ibench.backends.torch.lora import LoraManager

        if not knobs.options.lora:
            return None
        if self._lora is None:
            self._lora = LoraManager(self.pipe, self.denoiser_attr)
        try:
            applied["lora"] = self._lora.apply(knobs.options.lora)
        except BaseException:
            self._lora.remove()
            raise
        return self._lora.remove

    def _apply_channels_last(self, knobs: Knobs, applied: dict):
        import torch

        if not knobs.options.channels_last:
            return None
        modules = (self.denoiser, self.pipe.vae)
        for module in modules:
            module.to(memory_format=torch.channels_last)

        def undo():
            for module in modules:
                module.to(memory_format=torch.contiguous_format)
        return undo

    def _apply_vae_slicing(self, knobs: Knobs, applied: dict):
        if not knobs.vae_slicing:
            return None
        self.pipe.vae.enable_slicing()
        return self.pipe.vae.disable_slicing

    def _apply_vae_tiling(self, knobs: Knobs, applied: dict):
        if not knobs.vae_tiling:
            return None
        self.pipe.vae.enable_tiling()
        return self.pipe.vae.disable_tiling

    def _apply_vae_upcast(self, knobs: Knobs, applied: dict):
        import torch

        if not knobs.options.vae_upcast or self.dtype == torch.float32:
            return None
        vae = self.pipe.vae
        vae.to(torch.float32)
        decode = type(vae).decode.__get__(vae)

        def decode_fp32(z, *args, **kwargs):
            return decode(z.to(torch.float32), *args, **kwargs)

        vae.decode = decode_fp32

        def undo():
            del vae.decode
            vae.to(self.dtype)
        return undo

    def _apply_text_embedding_cache(self, knobs: Knobs, applied: dict):
        if not knobs.cache_text_embeddings:
            return None
        self._cache_encode_prompt()
        return lambda: self.pipe.__dict__.pop("encode_prompt", None)

    def _apply_cache(self, knobs: Knobs, applied: dict):
        if knobs.options.cache is None:
            return None
        if compile_options(knobs.options) is not None:  # seen: a guard on the count, a recompile in the timed calls
            from t2ibench.backends.torch.preflight import CACHE_WITH_COMPILE

            raise SkipConfig(CACHE_WITH_COMPILE)
        from t2ibench.backends.torch.caching import apply_cache

        self._cache = apply_cache(knobs.options.cache, self.pipe, self.denoiser, self.denoiser_attr, knobs.steps)
        applied["cache"] = self._cache.applied
        return self._cache.remove

    def _apply_compile(self, knobs: Knobs, applied: dict):
        import torch

        compiled = compile_options(knobs.options)
        if compiled is None:
            return None
        if compiled.backend != "inductor":
            from t2ibench.backends.torch.compile_backends import check_backend

            check_backend(compiled.backend, self.cuda)
        if compiled.regional:
            from t2ibench.backends.torch.regional import compile_regions

            applied["compiled_regions"], undo = compile_regions(self.denoiser, compiled)
            return undo
        key = (compiled, knobs.options.channels_last, knobs.options.attention)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(self.denoiser, **compiled.torch_compile_kwargs())
        setattr(self.pipe, self.denoiser_attr, self._compiled[key])
        self._install_hook()
        return lambda: setattr(self.pipe, self.denoiser_attr, self._original_denoiser)

    def _cache_encode_prompt(self) -> None:
        """Memoise ``pipe.encode_prompt`` per prompt: each prompt is encoded once per loaded model.

        A batched call is split into single-prompt calls whose cached outputs are concatenated
        along the batch dimension; the other arguments (guidance flag, device, …) join the key.
        """
        import inspect

        import torch

        encode = type(self.pipe).encode_prompt.__get__(self.pipe)
        signature = inspect.signature(encode)
        cache = self._embedding_cache
        text_args = [a for a in ("prompt", "prompt_2", "prompt_3", "negative_prompt", "negative_prompt_2",
                                 "negative_prompt_3") if a in signature.parameters]

        def cached(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            call = dict(bound.arguments)
            n = 1 if isinstance(call["prompt"], str) else len(call["prompt"])
            other = repr(sorted((k, v) for k, v in call.items() if k not in text_args and not torch.is_tensor(v)))
            parts = []
            for i in range(n):
                single = dict(call)
                for a in text_args:
                    if isinstance(call.get(a), (list, tuple)):
                        single[a] = call[a][i]
                key = (tuple(single.get(a) for a in text_args), other)
                if key not in cache:
                    cache[key] = encode(**single)
                parts.append(cache[key])
            return tuple(
                torch.cat(items) if torch.is_tensor(items[0]) and items[0].shape[0] == 1 and n > 1 else items[0]
                for items in zip(*parts)
            )

        self.pipe.encode_prompt = cached

    # -- calls -----------------------------------------------------------------------------------
    def _call(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome:
        import torch

        pipe = self.pipe
        texts = [p + knobs.prompt_suffix for p in prompts]
        kwargs: dict[str, Any] = dict(
            prompt=texts, num_inference_steps=knobs.steps, guidance_scale=knobs.guidance_scale,
            height=knobs.height, width=knobs.width, output_type="np", **self._fixed_kwargs,
        )
        if knobs.negative_prompt is not None:
            kwargs["negative_prompt"] = [knobs.negative_prompt] * len(texts)
        if self._step_callback == "callback_on_step_end":
            kwargs["callback_on_step_end"] = self.timer.step_ended
        elif self._step_callback == "callback":  # the legacy per-step callback (PixArt)
            kwargs["callback"] = lambda step, timestep, latents: self.timer.step_ended(pipe, step, timestep, {})
            kwargs["callback_steps"] = 1
        graphs_before = _dynamo_graph_count()
        cache, observe = self._cache, self._observe_dispatch
        if cache is not None:
            cache.before_call()
        if observe is not None:  # the config's first call: what the dispatcher really runs
            observe[2]["calls"].clear()
        with torch.inference_mode(), self._attention_ctx():
            self.timer.start()  # the timed call covers what a caller's pipe() call costs, noise to uint8 pixels
            if self._accepts_latents:
                cfg = self._original_denoiser.config
                scale = getattr(pipe, "vae_scale_factor", 8)
                shape = (cfg.in_channels, knobs.height // scale, knobs.width // scale)
                kwargs["latents"], kwargs["generator"] = initial_latents(seeds, shape, self.dtype)
            else:
                kwargs["generator"] = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
            images = _to_uint8(pipe(**kwargs).images)
            timing = self.timer.stop()
        if observe is not None:
            from t2ibench.backends.torch.attention import check_observed

            self._observe_dispatch = None
            knob, applied, seen = observe
            applied["attention"] = check_observed(knob, seen, type(self.denoiser).__name__)
        return CallOutcome(images, timing, recompiles=_dynamo_graph_count() - graphs_before,
                           cache_hit_rate=cache.hit_rate() if cache is not None else None)

    def _runnable_call(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome:
        """``_call``, with "no SDPA kernel for this device/dtype/shape", and a failure of a compile backend other
        than inductor (compile_backends), turned into a skip of the config."""
        compiled = compile_options(knobs.options)
        try:
            return self._call(prompts, seeds, knobs)
        except SkipConfig:
            raise
        except Exception as e:
            if isinstance(e, RuntimeError) and "No available kernel" in str(e):
                attention = getattr(knobs.options, "attention", "sdpa")
                raise SkipConfig(f"attention '{attention}' has no kernel for this device/dtype/shape") from e
            if compiled is not None and compiled.backend != "inductor":
                from t2ibench.backends.torch.compile_backends import compile_failure

                raise compile_failure(compiled.backend, e) from e
            raise

    def warmup(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> float:
        t0 = time.perf_counter()
        self._runnable_call(prompts, seeds, knobs)
        return (time.perf_counter() - t0) * 1000.0

    def generate(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome:
        return self._runnable_call(prompts, seeds, knobs)

    def profile(self, prompts: list[str], seeds: list[int], knobs: Knobs, path: Path) -> list[ProfiledOp]:
        """One untimed call traced by ``torch.profiler``: a Chrome trace at ``path``, the operators returned."""
        from t2ibench.backends.torch.profiling import trace_call

        return trace_call(lambda: self._runnable_call(prompts, seeds, knobs), self.cuda, path)

    def reset_peak_memory(self) -> None:
        self.memory.reset()

    def recover(self) -> None:
        """After a failed call (CUDA OOM, say): return the cached blocks so the next call has room."""
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def peak_memory(self) -> tuple[float | None, float]:
        return self.memory.peak_vram_mb(), self.memory.peak_rss_mb()

    def close(self) -> None:
        import gc

        import torch

        self._hook.remove()
        if self._lora is not None:
            self._lora.clear()
        self.pipe = None
        self._compiled.clear()
        self._embedding_cache.clear()
        gc.collect()
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = self._matmul_tf32
            torch.cuda.empty_cache()


def _matmul_tf32() -> bool:
    import torch

    return bool(torch.backends.cuda.matmul.allow_tf32)


def _dynamo_graph_count() -> int:
    import sys

    dynamo = sys.modules.get("torch._dynamo.utils")
    return int(dynamo.counters["stats"]["unique_graphs"]) if dynamo else 0


class TorchBackend:
    """The engine of the ``torch`` backend (declared in ``t2ibench.backends.torch``)."""

    name = "torch"

    def load(self, model: str, knobs: Knobs, device: str, *, trust_remote_code: bool = False) -> TorchModel:
        facts: dict = {}
        opts = knobs.options
        pipe = load_pipeline(model, precision=knobs.precision, vae=knobs.vae, offload=opts.offload, device=device,
                             trust_remote_code=trust_remote_code, quantize=opts.quantize,
                             layerwise_casting=opts.layerwise_casting, base=opts.base, facts=facts)
        return TorchModel(pipe, ModelSpec.parse(model), device, knobs.precision, facts)
