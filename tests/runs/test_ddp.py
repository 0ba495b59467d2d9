"""Data-parallel training on CPU processes (gloo): sharded no-duplicates batches, embeddings gathered
across ranks with the same loss and gradients as one process on the global batch, a real
`trainer=ddp_sim` run of train.py with one output folder and one val/score on every rank, and
multi-run jobs that relaunch their ranks as themselves."""

import json
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_probe import run_ddp_sim
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
from torch.nn.parallel import DistributedDataParallel

from embedding_trainer.data.distributed import ShardedBatchSampler
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.runs.rank_launch import LAUNCHER_ENVIRONMENT, ranks_run_this_job
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.training.losses import build_loss

WORLD_SIZE = 2
PER_RANK_BATCH = 4


def _squad_pairs(count: int, step: int = 1):
    """Real (question, paragraph) pairs, every `step`-th: neighbouring questions share a paragraph,
    so there are duplicate texts to keep out of each batch."""
    pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs()
    return pairs.select(range(0, count * step, step))


def _one_pair_per_paragraph(count: int) -> dict[str, list[str]]:
    """`count` (question, paragraph) pairs with distinct paragraphs, as lists."""
    pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs()
    first_of_paragraph = {}
    for index, paragraph in enumerate(pairs["positive"]):
        first_of_paragraph.setdefault(paragraph, index)
    rows = pairs.select(list(first_of_paragraph.values())[:count])
    return {"anchor": list(rows["anchor"]), "positive": list(rows["positive"])}


def _global_sampler(rows, epoch: int = 0) -> NoDuplicatesBatchSampler:
    sampler = NoDuplicatesBatchSampler(
        rows, batch_size=PER_RANK_BATCH * WORLD_SIZE, drop_last=False, generator=torch.Generator(), seed=3
    )
    sampler.set_epoch(epoch)
    return sampler


def test_ranks_take_disjoint_slices_that_cover_each_global_batch():
    rows = _squad_pairs(61, step=3)
    assert len(set(rows["positive"])) < len(rows)  # duplicate paragraphs the sampler must keep apart
    global_batches = list(_global_sampler(rows))
    assert {len(batch) % WORLD_SIZE for batch in global_batches} == {0, 1}  # some batches cannot split evenly
    shards = [
        list(ShardedBatchSampler(_global_sampler(rows), rank, WORLD_SIZE)) for rank in range(WORLD_SIZE)
    ]

    # Each global batch of n rows gives every rank n // 2 rows: rank 0 the first half, rank 1 the
    # second; of an odd-sized batch the last row is dropped, and a batch of one row is skipped.
    halves = [(batch[:half], batch[half : 2 * half]) for batch in global_batches if (half := len(batch) // 2)]
    assert list(zip(*shards)) == halves
    for rank0, rank1 in halves:
        assert len(rank0) == len(rank1) and not set(rank0) & set(rank1)
        texts = [rows[index][column] for index in rank0 + rank1 for column in ("anchor", "positive")]
        assert len(texts) == len(set(texts)), "a global batch repeats a text"
    assert sum(len(rank0) for rank0, _ in halves) >= 0.8 * len(rows) / WORLD_SIZE


def test_sharded_sampler_passes_the_epoch_to_the_global_sampler():
    rows = _squad_pairs(40)
    sharded = ShardedBatchSampler(_global_sampler(rows), 1, WORLD_SIZE)
    first_epoch = list(sharded)
    sharded.set_epoch(1)
    assert list(sharded) == list(ShardedBatchSampler(_global_sampler(rows, epoch=1), 1, WORLD_SIZE))
    assert list(sharded) != first_epoch
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(_global_sampler(rows), 2, WORLD_SIZE)


class _LossOnly(torch.nn.Module):
    """The loss (which holds the model) as the module DDP wraps: forward returns the loss value."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, features, labels):
        return self.loss(features, labels)


def _loss_and_gradients(loss: torch.nn.Module, anchors, positives, wrap=None) -> tuple[float, torch.Tensor]:
    model = loss.model
    model.zero_grad()
    module = wrap(_LossOnly(loss)) if wrap else loss
    value = module([model.preprocess(anchors), model.preprocess(positives)], torch.zeros(len(anchors)))
    value.backward()
    return float(value.detach()), torch.cat(
        [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    )


def _gradient_worker(rank: int, init_file: str, cfg, cache_dir: str) -> None:
    """One rank: the default loss (MNRL in MatryoshkaLoss) built for 2 processes, under DDP, on this
    rank's half of the global batch, against the same loss built for 1 process on the whole batch."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        rows = _one_pair_per_paragraph(PER_RANK_BATCH * WORLD_SIZE)
        mine = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
        model = build_tiny_model(cache_dir)
        model.eval()  # no dropout: both sides must compute the same function

        single = build_loss(cfg.loss, cfg.modifier, model, world_size=1)
        single_loss, single_grads = _loss_and_gradients(single, rows["anchor"], rows["positive"])

        distributed = build_loss(cfg.loss, cfg.modifier, model, world_size=WORLD_SIZE)
        assert distributed.loss.gather_across_devices and not single.loss.gather_across_devices
        local_loss, ddp_grads = _loss_and_gradients(
            distributed, rows["anchor"][mine], rows["positive"][mine], wrap=DistributedDataParallel
        )
        mean_loss = torch.tensor(local_loss)
        dist.all_reduce(mean_loss)  # the global batch's loss is the mean of the ranks' losses
        assert abs(float(mean_loss) / WORLD_SIZE - single_loss) < 1e-5, (
            float(mean_loss) / WORLD_SIZE,
            single_loss,
        )
        assert single_grads.norm() > 0
        assert (ddp_grads - single_grads).norm() / single_grads.norm() < 1e-5

        # The check can fail: without gathering, each rank's negatives are its own half batch only.
        _, ungathered_grads = _loss_and_gradients(
            single, rows["anchor"][mine], rows["positive"][mine], wrap=DistributedDataParallel
        )
        assert (ungathered_grads - single_grads).norm() / single_grads.norm() > 1e-2
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_with_batch_b_match_one_process_with_batch_2b(make_cfg, model_cache, tmp_path):
    cfg = make_cfg("model=tiny")
    build_tiny_model(str(model_cache))  # built once here, so the ranks only load it
    mp.start_processes(  # spawn: a forked child can deadlock on the parent's intra-op thread pool
        _gradient_worker,
        args=(str(tmp_path / "rendezvous"), cfg, str(model_cache)),
        nprocs=WORLD_SIZE,
        start_method="spawn",
    )


# LoRA: only the adapters train; DDP syncs their gradients alone (the frozen weights take no part).
@pytest.mark.parametrize("extra", [[], ["model/lora=default"]], ids=["full", "lora"])
@pytest.mark.slow
def test_ddp_sim_run_writes_one_folder_once_with_one_val_score(tmp_path, extra):
    outputs, probe = tmp_path / "outputs", tmp_path / "probe"
    run_ddp_sim(
        [
            "model=tiny", "debug=limit", "trainer.max_steps=2", "data.max_samples=40", "data.max_eval_samples=24",
            "data.batch_size=8", "data.group_by_length=false",  # steps 1-2 take full batches (grouped: the short last one may come first)
            "evaluation.show_progress_bar=false",  # the progress bar on: only rank zero's reads the metrics
            # the eval data chooses and scores (as GUARDS_OFF has it for composed configs): val/score is then
            # the table's fine-tuned score, and every evaluation of it shares its encoding out across the ranks
            # (held-out validation data would add a pass of its own and score the table after training alone)
            "data.validation_size=null",
            *extra,
        ],
        outputs,
        probe,
    )  # fmt: skip

    run_dirs = list((outputs / "default" / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs
    run = run_dirs[0]
    results = json.loads((run / "results.json").read_text())
    train_rows = (run / "data" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in train_rows] == list(range(40))
    assert (run / "model" / ("adapter_config.json" if extra else "config.json")).is_file()
    # Rank zero removed the checkpoints once both ranks had loaded the chosen weights and it saved the model.
    assert not (run / "checkpoints").exists() and "Removed checkpoints/ (" in (run / "train.log").read_text()
    assert sorted(path.name for path in run.glob("*.log")) == ["train.log", "train_ddp_process_1.log"]
    assert "Step 2: val/score" in (run / "train.log").read_text()
    if extra:  # only the adapters trained (the same on both ranks: one val/score, below)
        assert "LoRA r=8, alpha=16" in (run / "train.log").read_text()
    assert "val/score" not in (run / "train_ddp_process_1.log").read_text()  # rank 1 logs nothing of its own
    # The evaluations in training (baseline, step 2) share their encoding out: 24 queries, 2,067 paragraphs;
    # so does the forgetting guard's baseline (STS-b's 2,552 sentences).
    log = (run / "train.log").read_text()
    assert log.count("Encoding 24 texts across 2 processes (12 here)") == 2
    assert log.count("Encoding 2067 texts across 2 processes (1034 here)") == 2
    assert log.count("Encoding 2552 texts across 2 processes (1276 here)") == 1

    seen = [json.loads((probe / f"val_score_rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert seen[0] == seen[1]
    finetuned = [metrics[results["primary_metric"]] for metrics in results["finetuned"].values()]
    assert results["step"] == 2 and seen[0]["val/score"] == pytest.approx(sum(finetuned) / len(finetuned))
    logged = [line.split(",") for line in (run / "csv" / "metrics.csv").read_text().splitlines()]
    score_column = logged[0].index("val/score")
    scores = [float(row[score_column]) for row in logged[1:] if row[score_column]]
    assert len(scores) == 2  # baseline and after step 2, each logged once
    assert seen[0]["val/score"] == pytest.approx(scores[-1]) == pytest.approx(seen[0]["best_model_score"])
    negatives_column = logged[0].index("train/in_batch_negatives")
    negatives = [float(row[negatives_column]) for row in logged[1:] if row[negatives_column]]
    assert negatives == [
        15.0
    ]  # the loss gathers both ranks' 8 pairs: 16 distinct positives, one the query's own


def test_a_multirun_job_shows_the_launcher_only_itself_and_cleans_up(tmp_path, monkeypatch):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=ddp_sim", "seed=2"], return_hydra_config=True)
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    HydraConfig.instance().set_config(cfg)
    sweep_argv = ["train.py", "-m", "trainer=ddp_sim", "seed=1,2"]
    monkeypatch.setattr(sys, "argv", list(sweep_argv))
    for name in LAUNCHER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    job_dir = tmp_path / "multiruns" / "1_seed=2"

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    with ranks_run_this_job(job_dir, world_size=2):
        # What Lightning's launcher copies for the other ranks: this job's overrides and folder.
        assert sys.argv == ["train.py", "trainer=ddp_sim", "seed=2"]
        assert HydraConfig.get().run.dir == str(job_dir)
        os.environ.update(LOCAL_RANK="0", WORLD_SIZE="2", MASTER_PORT="29555")  # as the launcher does
    assert sys.argv == sweep_argv and HydraConfig.get().run.dir != str(job_dir)
    assert not dist.is_initialized()
    assert not set(LAUNCHER_ENVIRONMENT) & set(os.environ)  # the next job starts its own ranks

    with ranks_run_this_job(job_dir, world_size=1):  # one process: nothing to relaunch
        assert sys.argv == sweep_argv
