"""A default-style run prints no warning a user cannot act on (see embedding_trainer.utils.warnings_filter)."""

import os
import re
import subprocess
import sys

import pytest

from embedding_trainer.settings.resolvers import PROJECT_ROOT

pytestmark = pytest.mark.slow  # each test runs train.py in a subprocess

# What embedding_trainer.utils.warnings_filter silences.
SILENCED = [
    "💡 Tip:",
    "`isinstance(treespec, LeafSpec)` is deprecated",
    "torch.distributed.nn.functional.all_gather is deprecated",
    "The `srun` command is available on your system but is not used",
]
# A printed Python warning ("path.py:12: [Category: ]message") or a line naming a warning.
WARNING_LINE = re.compile(r"\S+\.py:\d+: |warning", re.IGNORECASE)
# Lines that may match WARNING_LINE in a healthy run; none so far.
ALLOWED: list[re.Pattern] = []


def test_default_job_prints_no_unactionable_warning(tmp_path):
    # A fake `srun` on PATH outside any SLURM job: what a login node (or CI's local cluster) looks like.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "PYTHONWARNINGS"))
    }
    env.update(HF_HUB_OFFLINE="1", PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    # Enough steps to log (as the default job does): fewer than log_every_n_steps is an actionable warning.
    job = ["model=tiny", "trainer.max_steps=2", "trainer.log_every_n_steps=1", "data.max_samples=64"]
    job.append("data.max_eval_samples=32")
    paths = [f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), *job, *paths]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    # It checkpointed, and removed its checkpoints once the model was saved (checkpoints.keep=none).
    assert "Removed checkpoints/ (" in output and not list(tmp_path.glob("default/runs/*/checkpoints"))
    assert [message for message in SILENCED if message in output] == []
    lines = output.replace("\r", "\n").splitlines()
    unexpected = [
        line for line in lines if WARNING_LINE.search(line) and not any(p.search(line) for p in ALLOWED)
    ]
    assert unexpected == []


GATHER_IN_ONE_PROCESS_GROUP = """
import sys, torch, torch.distributed as dist
from embedding_trainer.utils.warnings_filter import silence_unactionable
from sentence_transformers.util import all_gather_with_grad
silence_unactionable()
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
all_gather_with_grad(torch.ones(2, requires_grad=True))
dist.destroy_process_group()
"""


def test_ddp_gather_deprecation_is_silenced(tmp_path):
    """What the in-batch-negative losses call under DDP (gather_across_devices), in a one-process group."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    command = [sys.executable, "-c", GATHER_IN_ONE_PROCESS_GROUP, str(tmp_path / "rendezvous")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deprecated" not in result.stderr
