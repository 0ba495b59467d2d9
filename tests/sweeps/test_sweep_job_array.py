"""`scripts/slurm/sweep.sbatch` against a real SLURM cluster (`scripts/slurm/local_cluster.sh up`): a
job array of two sweep workers on one journal-file study ends with the study's `n_trials` trials, run
by both tasks, and one sweep report. Marked `slurm`; skipped when `sinfo` does not answer."""

import os
import subprocess
import sys

import optuna
from optuna.trial import TrialState
from test_sweeps import JOB

from conftest import NEEDS_SLURM_CLUSTER
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.sweeps.storage import open_storage

pytestmark = NEEDS_SLURM_CLUSTER


def test_a_job_array_of_sweep_workers_runs_one_study(tmp_path):
    journal = tmp_path / "study.log"
    command = [
        "sbatch",
        "--wait",
        "--array=1-2",
        "--gpus-per-node=0",
        "--cpus-per-task=1",
        "--mem=4G",
        f"--job-name=et-{tmp_path.name}",
        f"--output={tmp_path}/slurm-%A_%a.out",
        "scripts/slurm/sweep.sbatch",
        "hparams_search=lr",
        *JOB,
        "model.lr=tag(log, interval(1e-4, 1e-2))",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweeper.storage=journal:{journal}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline", PYTHON=sys.executable, TRAINER="cpu")
    # Submitted from the repository root, as the script's header shows; --wait: until both tasks end.
    result = subprocess.run(
        command, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    logs = [path.read_text() for path in sorted(tmp_path.glob("slurm-*_*.out"))]
    assert result.returncode == 0 and len(logs) == 2, (result.stderr, logs)
    assert not any("Traceback" in log for log in logs), logs
    study = optuna.load_study(study_name="default-lr", storage=open_storage(f"journal:{journal}"))
    assert len(study.trials) == 4 and all(trial.state == TrialState.COMPLETE for trial in study.trials)
    assert len({trial.system_attrs["worker"] for trial in study.trials}) == 2  # both tasks ran trials
    assert sum(log.count("Sweep report: ") for log in logs) == 1
