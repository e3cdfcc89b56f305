"""The ``cache`` knob: diffusers' step caches (FirstBlockCache, TaylorSeer, MagCache, FasterCache,
Pyramid Attention Broadcast) and DeepCache (the ``deepcache`` package), applied per config and removed
for the next. No cache of our own: this module wraps those APIs and *counts* what they skip.

Counting: the modules a cache can skip ("units": the transformer blocks for first_block/magcache, the
attention layers for taylorseer/pab, the UNet's down/mid/up blocks for deepcache) get a counting
``forward`` *under* the cache's own wrapper, so only their real executions are counted. The cache hit
rate of a call is ``1 - executed / (units × denoiser calls)``. The counters exist only while a cache
is set (a Python increment per unit call) and are removed with it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from t2ibench.errors import SkipConfig

# the unit each method skips, as the report names it
UNITS = {"first_block": "transformer blocks", "magcache": "transformer blocks", "taylorseer": "attention layers",
         "pab": "attention layers", "faster_cache": "attention layers", "deepcache": "UNet blocks (down, mid, up)"}


class _Counter:
    """Counts the real executions of the unit modules (their forward under the cache's wrapper)."""

    def __init__(self) -> None:
        self.executed = 0
        self.denoiser_calls = 0
        self._wrapped: list[tuple[Any, bool, Any]] = []  # (module, had an instance forward, that forward)

    def wrap(self, module) -> None:
        had = "forward" in module.__dict__
        previous = module.__dict__.get("forward")
        inner = module.forward

        def counted(*args, **kwargs):
            self.executed += 1
            return inner(*args, **kwargs)

        module.forward = counted
        self._wrapped.append((module, had, previous))

    def denoiser_called(self, *_args, **_kwargs) -> None:
        self.denoiser_calls += 1

    def restore(self) -> None:
        for module, had, previous in reversed(self._wrapped):
            if had:
                module.forward = previous
            else:
                module.__dict__.pop("forward", None)
        self._wrapped.clear()


@dataclass
class ActiveCache:
    """A cache set on the denoiser for one config: its per-call reset, hit rate and removal."""

    method: str
    units: list  # the modules counted
    counter: _Counter
    remove_fns: list[Callable[[], None]] = field(default_factory=list)
    reset_fn: Callable[[], None] | None = None
    applied: dict = field(default_factory=dict)

    def before_call(self) -> None:
        """Fresh cache state for each call (every call of a config is then the same computation)."""
        if self.reset_fn is not None:
            self.reset_fn()
        self.counter.executed = 0
        self.counter.denoiser_calls = 0

    def hit_rate(self) -> float | None:
        expected = len(self.units) * self.counter.denoiser_calls
        if expected == 0:
            return None
        return 1.0 - self.counter.executed / expected

    def remove(self) -> None:
        for fn in reversed(self.remove_fns):
            fn()
        self.remove_fns.clear()


def _family(denoiser) -> str:
    return type(denoiser).__name__


def _diffusers_config(opts, pipe, denoiser, steps: int, timestep: Callable[[], Any]):
    """The diffusers cache config for the options, or SkipConfig when it cannot run on this denoiser."""
    import torch
    from diffusers import hooks

    name = _family(denoiser)
    method = opts.method
    if method == "first_block":
        tail = _block_lists(denoiser)[-1]
        if getattr(tail, "context_pre_only", False):
            # diffusers 0.42.1: FBCBlockHook subtracts the head block's text states from the tail block's
            # output, which is None for a context_pre_only block (the last MMDiT block of SD3)
            raise SkipConfig(f"cache 'first_block' fails in diffusers on {name}: its last block returns no text "
                             "states (context_pre_only), which diffusers' FirstBlockCache subtracts")
        return hooks.FirstBlockCacheConfig(threshold=opts.threshold), {}
    if method == "taylorseer":
        return hooks.TaylorSeerCacheConfig(cache_interval=opts.cache_interval,
                                           disable_cache_before_step=opts.disable_cache_before_step,
                                           max_order=opts.max_order, taylor_factors_dtype=torch.float32), {}
    if method == "magcache":
        tail = _block_lists(denoiser)[-1]
        if getattr(tail, "context_pre_only", False):
            raise SkipConfig(f"cache 'magcache' fails in diffusers on {name}: its last block returns no text "
                             "states (context_pre_only)")
        ratios, origin = opts.mag_ratios, "cache.mag_ratios"
        if ratios is None and not opts.calibrate:
            from diffusers.hooks import mag_cache

            published = getattr(mag_cache, "FLUX_MAG_RATIOS", None)
            if published is None or "Flux" not in name:
                raise SkipConfig(f"cache 'magcache' needs magnitude ratios for {name}: set cache.mag_ratios "
                                 "(from a calibration run) or cache.calibrate: true")
            ratios, origin = published, "diffusers FLUX_MAG_RATIOS (published for FLUX.1)"
        config = hooks.MagCacheConfig(threshold=opts.threshold, max_skip_steps=opts.max_skip_steps,
                                      retention_ratio=opts.retention_ratio, num_inference_steps=steps,
                                      mag_ratios=None if opts.calibrate else ratios, calibrate=opts.calibrate)
        return config, {"mag_ratios": "calibrating (nothing is skipped)" if opts.calibrate else origin}
    if method == "pab":
        return hooks.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=opts.spatial_attention_block_skip_range,
            spatial_attention_timestep_skip_range=tuple(opts.spatial_attention_timestep_skip_range),
            current_timestep_callback=timestep), {}
    if method == "faster_cache":
        if "3D" not in name:  # diffusers' FasterCache reshapes 5-D (video) latents
            raise SkipConfig(f"cache 'faster_cache': diffusers' FasterCache handles video denoisers (5-D latents) "
                             f"only, not {name}")
        return hooks.FasterCacheConfig(
            spatial_attention_block_skip_range=opts.spatial_attention_block_skip_range,
            spatial_attention_timestep_skip_range=tuple(opts.spatial_attention_timestep_skip_range),
            unconditional_batch_skip_range=opts.unconditional_batch_skip_range,
            current_timestep_callback=timestep), {}
    raise SkipConfig(f"cache '{method}' is not supported")  # pragma: no cover (the options are a closed union)


def _block_lists(denoiser) -> list:
    """The transformer blocks that diffusers' block caches hook (in its order)."""
    import torch
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [block for name, child in denoiser.named_children()
            if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
            for block in child]


def _hooked(denoiser) -> dict:
    """Modules (not the root) and their diffusers hook names."""
    return {m: tuple(m._diffusers_hook.hooks) for name, m in denoiser.named_modules()
            if name and getattr(m, "_diffusers_hook", None) is not None and m._diffusers_hook.hooks}


def apply_cache(opts, pipe, denoiser, denoiser_attr: str, steps: int) -> ActiveCache:
    """Set the cache ``opts`` on the pipeline's denoiser (raises SkipConfig where it cannot run)."""
    name = _family(denoiser)
    if opts.method == "deepcache":
        if denoiser_attr != "unet":
            raise SkipConfig(f"cache 'deepcache' needs a UNet denoiser (SD 1.x/2.x, SDXL), not {name}")
        return _apply_deepcache(opts, pipe)
    if denoiser_attr == "unet" or not _block_lists(denoiser):
        raise SkipConfig(f"cache '{opts.method}' needs a transformer denoiser (Flux, SD3…), not {name}")
    return _apply_diffusers_cache(opts, pipe, denoiser, steps)


def _timestep_tracker(pipe, denoiser):
    """The current timestep (in the scheduler's units) for PAB/FasterCache: the pipeline's own
    ``current_timestep`` where it has one, else the timestep the denoiser was last called with."""
    seen: dict = {}

    def pre_hook(_module, args, kwargs):
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        seen["t"] = t

    def current():
        t = getattr(pipe, "_current_timestep", None) if hasattr(type(pipe), "current_timestep") else None
        t = seen.get("t") if t is None else t
        if t is None:
            return -1
        return float(t.flatten()[0]) if hasattr(t, "flatten") else float(t)

    handle = denoiser.register_forward_pre_hook(pre_hook, with_kwargs=True)
    return current, handle.remove


def _apply_diffusers_cache(opts, pipe, denoiser, steps: int) -> ActiveCache:
    from diffusers import hooks
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    current_timestep, remove_tracker = _timestep_tracker(pipe, denoiser)
    try:
        config, extra = _diffusers_config(opts, pipe, denoiser, steps, current_timestep)
    except BaseException:
        remove_tracker()
        raise
    mixin = hasattr(denoiser, "enable_cache") and hasattr(denoiser, "disable_cache")
    had_registry = {m for m in denoiser.modules() if hasattr(m, "_diffusers_hook")}
    before = _hooked(denoiser)
    appliers = {"FirstBlockCacheConfig": hooks.apply_first_block_cache, "TaylorSeerCacheConfig": hooks.apply_taylorseer_cache,
                "MagCacheConfig": hooks.apply_mag_cache, "PyramidAttentionBroadcastConfig": hooks.apply_pyramid_attention_broadcast,
                "FasterCacheConfig": hooks.apply_faster_cache}

    def enable():
        if mixin:
            denoiser.enable_cache(config)
        else:
            appliers[type(config).__name__](denoiser, config)

    def disable():
        if mixin:
            denoiser.disable_cache()
            return
        registry = hooks.HookRegistry.check_if_exists_or_initialize(denoiser)
        for names in added_hooks:
            registry.remove_hook(names, recurse=True)
        registry.invalidate_child_registries_cache()

    def drop_registries():
        for m in denoiser.modules():
            reg = getattr(m, "_diffusers_hook", None)
            if m not in had_registry and reg is not None and not reg.hooks:
                del m._diffusers_hook
                if "forward" in m.__dict__ and getattr(m.__dict__["forward"], "__self__", None) is m:
                    del m.__dict__["forward"]  # the bound method diffusers put back on removal

    # probe which modules the cache hooks, then hook them again over counting forwards
    enable()
    after = _hooked(denoiser)
    added_hooks = sorted({h for m, names in after.items() for h in names if h not in before.get(m, ())})
    units = [m for m, names in after.items() if set(names) - set(before.get(m, ()))]
    disable()
    drop_registries()
    if not units:
        remove_tracker()
        raise SkipConfig(f"cache '{opts.method}' found nothing to cache in {_family(denoiser)}")
    counter = _Counter()
    for unit in units:
        counter.wrap(unit)
    count_handle = denoiser.register_forward_pre_hook(counter.denoiser_called)
    enable()

    def reset():
        registry = hooks.HookRegistry.check_if_exists_or_initialize(denoiser)
        registry.reset_stateful_hooks(recurse=True)
        # pipelines that do not open `cache_context` (SD3) run in one context, "cond" (CFG is batched)
        _set_cache_context(denoiser, CacheContext("cond"))

    active = ActiveCache(opts.method, units, counter, reset_fn=reset)
    active.remove_fns += [remove_tracker, count_handle.remove, counter.restore, disable]
    # removal order (reversed): disable the cache, put the forwards back, drop the hooks
    active.remove_fns.insert(0, drop_registries)
    classes: dict[str, int] = {}
    for unit in units:
        classes[type(unit).__name__] = classes.get(type(unit).__name__, 0) + 1
    active.applied = {"method": opts.method, "via": "diffusers " + ("enable_cache" if mixin else "hooks.apply_*"),
                      "config": type(config).__name__, "unit": UNITS[opts.method], "units": len(units),
                      "unit_classes": classes, **extra}
    return active


def _apply_deepcache(opts, pipe) -> ActiveCache:
    if importlib.util.find_spec("DeepCache") is None:
        raise SkipConfig("cache 'deepcache' needs the DeepCache package (pip install 't2ibench[cache]')")
    from importlib.metadata import version

    from DeepCache import DeepCacheSDHelper

    unet = pipe.unet
    units = [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]
    if unet.mid_block is None:
        raise SkipConfig(f"cache 'deepcache' needs a UNet with a mid block ({type(unet).__name__} has none)")
    instance_forwards = {m: m.__dict__["forward"] for m in unet.modules() if "forward" in m.__dict__}
    counter = _Counter()
    for unit in units:
        counter.wrap(unit)
    count_handle = unet.register_forward_pre_hook(counter.denoiser_called)
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=opts.cache_interval, cache_branch_id=opts.cache_branch_id)
    helper.enable()

    def reset():
        helper.cached_output = {}
        helper.start_timestep = None
        helper.cur_timestep = 0

    def disable():
        helper.disable()
        for m in unet.modules():  # DeepCache puts bound methods back as instance attributes
            if "forward" in m.__dict__ and m not in instance_forwards and getattr(m.__dict__["forward"], "__self__", None) is m:
                del m.__dict__["forward"]

    active = ActiveCache("deepcache", units, counter, reset_fn=reset)
    active.remove_fns += [count_handle.remove, counter.restore, disable]
    active.applied = {"method": "deepcache", "via": f"DeepCache {version('DeepCache')} DeepCacheSDHelper",
                      "unit": UNITS["deepcache"], "units": len(units),
                      "cache_interval": opts.cache_interval, "cache_branch_id": opts.cache_branch_id}
    return active
