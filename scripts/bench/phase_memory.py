"""Anonymous memory (RssAnon) of this process, sampled, and broken down by the phases of a run.

Used by the large-data benchmarks (`large_training.py`, `large_rows.py`): `PeakSampler` samples RssAnon
every 20 ms; `mark(name)` closes a phase (its peak since the previous mark and the RssAnon at its end);
`watch` wraps functions of the package so that each call closes the phase before it ("before <name>")
and its own (`name`), without touching the package's source. RssAnon leaves out the file-backed pages
of memory-mapped files (page cache the kernel can drop); `ru_maxrss` counts them.
"""

import importlib
import resource
import threading
import time
from functools import wraps
from pathlib import Path

import pytorch_lightning as pl


def rss_anon() -> int:
    """This process's anonymous resident memory, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def ru_maxrss_mb() -> float:
    """This process's peak resident memory (anonymous and file-backed), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class PeakSampler(threading.Thread):
    """The highest `rss_anon()` seen (`peak`), sampled every `interval` seconds while it runs, and the
    phases closed by `mark` (`phases`: name, peak MiB within it, MiB at its end; a phase marked again
    right after itself is merged into one)."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, 0, True
        self.phase_peak, self.phases = 0, []
        self.lock = threading.Lock()

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> int:
        now = rss_anon()
        with self.lock:
            self.peak, self.phase_peak = max(self.peak, now), max(self.phase_peak, now)
        return now

    def mark(self, name: str) -> None:
        """Close the phase `name`: its peak since the previous mark and the RssAnon now."""
        now = self.sample()
        with self.lock:
            peak, self.phase_peak = self.phase_peak, now
        if self.phases and self.phases[-1]["phase"] == name:
            peak = max(peak, self.phases.pop()["peak_mb"] * 2**20)
        self.phases.append(
            {"phase": name, "peak_mb": round(peak / 2**20, 1), "end_mb": round(now / 2**20, 1)}
        )

    def stop(self) -> None:
        self.running = False
        self.join()


def watch(sampler: PeakSampler, targets: list[tuple[str, str]]) -> None:
    """Wrap each (name, target) (`module:attribute` or `module:Class.method`, where the caller looks it
    up) so that a call marks "before <name>" on entry and `name` on return."""
    for name, target in targets:
        module_name, path = target.split(":")
        owner = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, attribute, _marked(getattr(owner, attribute), sampler, name))


def _marked(function, sampler: PeakSampler, name: str):
    @wraps(function)
    def marked(*args, **kwargs):
        sampler.mark(f"before {name}")
        result = function(*args, **kwargs)
        sampler.mark(name)
        return result

    return marked


class PhaseMarks(pl.Callback):
    """Marks the training phases on `PhaseMarks.sampler` (set before the config instantiates it): "until
    fit" at the start of the training loop, then "first step" and "steps"."""

    sampler: PeakSampler

    def on_train_start(self, trainer, module):
        self.sampler.mark("until fit")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.sampler.mark("first step" if trainer.global_step == 1 else "steps")
