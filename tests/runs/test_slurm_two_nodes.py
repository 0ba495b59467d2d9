"""Two SLURM nodes (`scripts/slurm/local_cluster.sh up`: partition `two`, two slurmd daemons on this
host): `scripts/slurm/train.sbatch` with `--nodes=2 --ntasks-per-node=1` trains one gloo process per
node (`trainer.num_nodes=2 trainer.devices=1`) to the same per-step losses and gradients as one
process on the global batch, in one run folder with one registry row, and a requeued two-node job
resumes both ranks from the checkpoint to the uninterrupted result.

Marked `slurm` (and slow); skipped when no cluster answers or it has no partition `two`."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_slurm_cluster import _environment, _finetuned, _job_state, _rows

from conftest import NEEDS_SLURM_CLUSTER
from embedding_trainer.settings.resolvers import PROJECT_ROOT

TESTS = Path(__file__).resolve().parent.parent


def _partition_two_answers() -> bool:
    """Whether the cluster has partition `two` up with two nodes that can run jobs (`local_cluster.sh up`
    sets it DOWN when a two-node job fails there)."""
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--partition=two", "--format=%a %D %T"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    rows = [line.split() for line in result.stdout.splitlines()]
    return sum(int(n) for up, n, state in rows if up == "up" and state in ("idle", "mixed", "allocated")) >= 2


pytestmark = [
    *NEEDS_SLURM_CLUSTER,
    pytest.mark.skipif(
        not _partition_two_answers(), reason="no two-node partition `two` (scripts/slurm/local_cluster.sh up)"
    ),
]

# 64 pairs, global batches of 8 (4 per node): 8 steps of the default loss (MNRL in Matryoshka, its
# in-batch negatives gathered across the nodes); the guards, held-out validation and the baseline
# evaluation off (one evaluation, after training).
JOB = [
    "model=tiny",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "evaluation.baseline=false",
    "callbacks.progress_bar.refresh_rate=0",
    "data.max_samples=64",
    "data.max_eval_samples=24",
    "data.group_by_length=false",
    "data.min_steps=null",
    "data.validation_size=null",
    "evaluation.forgetting_guard=null",
    "evaluation.health=null",
    "trainer.max_epochs=1",
    "registry.progress_every_n_steps=1",
    "seed=5",
]
STEPS = 8


def _probe(folder: Path, pause_s: float = 0.0) -> list[str]:
    return [
        "+callbacks.probe._target_=ddp_probe.StepProbe",
        f"+callbacks.probe.folder={folder}",
        f"+callbacks.probe.pause_s={pause_s}",
    ]


def _env() -> dict[str, str]:
    """The job's environment: no inherited SLURM or launcher variables; tests/ importable (the probe)."""
    env = _environment()
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _records(probe: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (probe / f"steps_rank{rank}.jsonl").read_text().splitlines()]


def _losses(records: list[dict]) -> dict[int, float]:
    """Step -> loss; a step trained again after a resume keeps its last loss."""
    return {record["step"]: record["loss"] for record in records if "step" in record}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[dict[int, float], torch.Tensor]:
    """The job as one process on the global batch of 8 (`trainer=cpu`), outside SLURM: its per-step
    losses and last gradients."""
    folder = tmp_path_factory.mktemp("one_process")
    probe = folder / "probe"
    command = [
        sys.executable, str(PROJECT_ROOT / "train.py"), "trainer=cpu", *JOB, "data.batch_size=8",
        *_probe(probe), f"hydra.run.dir={folder / 'run'}", f"paths.log_dir={folder / 'outputs'}",
        f"paths.cache_dir={folder / 'cache'}",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=folder, env=_env(), capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    losses = _losses(_records(probe, 0))
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses, torch.load(probe / "grads_rank0.pt")


def _submit(tmp_path: Path, probe: Path, pause_s: float = 0.0) -> str:
    """`sbatch --partition=two --nodes=2 --ntasks-per-node=1 scripts/slurm/train.sbatch` (ddp_sim: gloo
    on CPU, 4 rows per node); the job id."""
    command = [
        "sbatch", "--parsable", "--partition=two", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0",
        "--cpus-per-task=1", "--mem=4G", f"--job-name=et-{tmp_path.name}", f"--output={tmp_path}/slurm-%j.out",
        "scripts/slurm/train.sbatch", *JOB, "data.batch_size=4", *_probe(probe, pause_s),
        f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    env = {**_env(), "PYTHON": sys.executable, "TRAINER": "ddp_sim"}
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip().split(";")[0]


def _wait_until_done(job_id: str, log: Path, timeout: float = 600) -> dict[str, str]:
    """Block until job `job_id` leaves the queue (a requeued job comes back PENDING); its last state,
    which must be COMPLETED (else the job log's tail in the failure)."""
    deadline = time.monotonic() + timeout
    while (state := _job_state(job_id))["JobState"] in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], check=False, timeout=30)
            pytest.fail(f"job {job_id} still {state['JobState']} after {timeout} s")
        time.sleep(1)
    assert state["JobState"] == "COMPLETED", log.read_text()[-4000:] if log.exists() else state
    return state


def _node_names(node_list: str) -> list[str]:
    """The two node names of a SLURM node list (`vm-n[1-2]`), sorted."""
    done = subprocess.run(
        ["scontrol", "show", "hostnames", node_list], capture_output=True, text=True, check=True, timeout=30
    )
    names = sorted(done.stdout.split())
    assert len(names) == 2, names
    return names


def _assert_matches_one_process(probe: Path, one_process) -> None:
    """The two ranks' mean loss at every step and their (all-reduced) last gradients equal one process's."""
    single_losses, single_grads = one_process
    losses = [_losses(_records(probe, rank)) for rank in (0, 1)]
    assert sorted(losses[0]) == sorted(losses[1]) == sorted(single_losses)
    for step, single in single_losses.items():
        assert abs((losses[0][step] + losses[1][step]) / 2 - single) < 1e-5, step
    grads = [torch.load(probe / f"grads_rank{rank}.pt") for rank in (0, 1)]
    assert torch.equal(grads[0], grads[1]) and single_grads.norm() > 0
    assert (grads[0] - single_grads).norm() / single_grads.norm() < 1e-5


def test_two_nodes_train_like_one_process_on_the_global_batch_in_one_run_folder(tmp_path, one_process):
    probe = tmp_path / "probe"
    job_id = _submit(tmp_path, probe)
    log_file = tmp_path / f"slurm-{job_id}.out"
    state = _wait_until_done(job_id, log_file)
    log = log_file.read_text()
    starts = [_records(probe, rank)[0] for rank in (0, 1)]
    assert [start["start"] for start in starts] == [0, 0]
    assert sorted(start["node"] for start in starts) == _node_names(state["NodeList"])  # one rank per node
    assert f"on {state['NodeList']}" in log
    for rank in (0, 1):  # one srun task per node: SLURM_PROCID is the global rank
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log
    _assert_matches_one_process(probe, one_process)
    run = tmp_path / "default" / "slurm" / job_id
    assert _finetuned(run)
    (row,) = _rows(tmp_path)
    assert row["status"] == "success" and row["output_dir"] == str(run) and row["step"] == STEPS
    assert [p.name for p in (tmp_path / "default").iterdir()] == ["slurm"]  # no second, timestamped folder
    assert [p.name for p in (tmp_path / "default" / "slurm").iterdir()] == [job_id]


def test_a_requeued_two_node_job_resumes_both_ranks_to_the_uninterrupted_result(tmp_path, one_process):
    probe = tmp_path / "probe"
    job_id = _submit(tmp_path, probe, pause_s=0.5)  # 8 steps of >= 0.5 s: time to signal at step 2
    log_file = tmp_path / f"slurm-{job_id}.out"
    deadline = time.monotonic() + 400
    while not (probe / "steps_rank0.jsonl").exists() or max(_losses(_records(probe, 0)), default=0) < 2:
        assert time.monotonic() < deadline and _job_state(job_id)["JobState"] in ("PENDING", "RUNNING"), (
            log_file.read_text()[-4000:] if log_file.exists() else "no job log"
        )
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)
    state = _wait_until_done(job_id, log_file)
    log = log_file.read_text()
    run = tmp_path / "default" / "slurm" / job_id
    assert "Stopped on SIGUSR1 at step" in log and f"Requeued SLURM job {job_id}" in log
    assert f"Resuming the unfinished run in {run}" in log and int(state["Restarts"]) >= 1
    # Both ranks started twice: from step 0, then (after the requeue) from the checkpoint's step.
    starts = [[r["start"] for r in _records(probe, rank) if "start" in r] for rank in (0, 1)]
    assert starts[0] == starts[1] and len(starts[0]) == 2 and 0 == starts[0][0] < starts[0][1] < STEPS
    _assert_matches_one_process(probe, one_process)
    (row,) = _rows(tmp_path)
    assert row["status"] == "success" and row["output_dir"] == str(run) and row["step"] == STEPS
