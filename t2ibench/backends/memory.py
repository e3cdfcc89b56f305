"""Peak memory per config: CUDA ``max_memory_allocated`` after a reset, or the process's peak RSS.

On Linux the RSS high-water mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs, so
the CPU peak is exact per config; elsewhere it falls back to the process-lifetime peak.
"""

from __future__ import annotations

import os
import resource
import sys

_MB = 1024 * 1024


class MemoryTracker:
    def __init__(self, cuda: bool):
        self.cuda = cuda
        self._rss_resettable = os.path.exists("/proc/self/clear_refs")

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if self._rss_resettable:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self._rss_resettable = False

    def peak_vram_mb(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return torch.cuda.max_memory_allocated() / _MB

    def peak_rss_mb(self) -> float:
        if self._rss_resettable:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / _MB if sys.platform == "darwin" else peak / 1024
