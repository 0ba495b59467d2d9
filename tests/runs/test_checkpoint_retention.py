"""What a run keeps of its checkpoints (`checkpoints.keep`): a finished run removes them once its
model is saved (or keeps what was asked), a failed or interrupted one keeps last.ckpt and resumes
from it; the removal itself on a folder laid out as Lightning leaves it."""

import builtins
import json
import logging
import signal

import pytest
import pytorch_lightning as pl
import torch

from embedding_trainer.runs import checkpoints
from embedding_trainer.runs.checkpoints import keep_checkpoints
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

# Two epochs of two steps on the STS score data (the cheapest evaluation), the default callbacks:
# a checkpoint at each epoch's end (steps 2 and 4), last.ckpt linking to the best.
JOB = [
    "model=tiny",
    "dataset_type=score",
    "loss=cosent",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "callbacks.progress_bar.refresh_rate=0",
    "data.max_samples=16",
    "data.batch_size=8",
    "data.max_eval_samples=16",
    "trainer.max_epochs=2",
]


class FailAtStep(pl.Callback):
    """Raises `error` (a name in builtins) before the optimizer step `step` (0-based), once."""

    def __init__(self, step: int, error: str) -> None:
        self.step, self.error = step, error

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise getattr(builtins, self.error)("failed in training")


@pytest.mark.slow
def test_a_finished_run_removes_its_checkpoints_once_the_model_is_saved(make_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="embedding_trainer.runs.checkpoints"):
        _, objects = train(make_cfg(*JOB))
    assert objects["trainer"].checkpoint_callback.best_model_path  # checkpoints were written
    assert not (run / "checkpoints").exists()
    assert (run / "model" / "config.json").is_file() and (run / "results.json").is_file()
    assert "Removed checkpoints/ (" in caplog.text and f"the model is saved in {run / 'model'}" in caplog.text


@pytest.mark.slow
def test_keep_last_keeps_last_ckpt_alone_and_training_goes_on_from_it(make_cfg, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    train(make_cfg(*JOB, "checkpoints.keep=last", output_dir=first))
    last = first / "checkpoints" / "last.ckpt"
    assert sorted(path.name for path in (first / "checkpoints").iterdir()) == ["last.ckpt"]
    assert not last.is_symlink()
    chosen = json.loads((first / "results.json").read_text())["step"]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == chosen

    _, objects = train(make_cfg(*JOB, "trainer.max_epochs=3", f"ckpt_path={last}", output_dir=second))
    assert objects["trainer"].global_step == 6
    assert sorted(objects["evaluation"].history) == [2, 4, 6]
    assert not (second / "checkpoints").exists()  # the default again


@pytest.mark.slow
def test_keep_all_keeps_every_checkpoint(make_cfg, tmp_path):
    train(make_cfg(*JOB, "checkpoints.keep=all", "callbacks.model_checkpoint.save_top_k=-1"))
    assert sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "last.ckpt",
        "step2.ckpt",
        "step4.ckpt",
    ]


@pytest.mark.parametrize("error", ["RuntimeError", "KeyboardInterrupt"], ids=["error", "ctrl_c"])
@pytest.mark.slow
def test_a_run_that_fails_in_training_keeps_last_ckpt_and_resumes_from_it(make_cfg, tmp_path, error):
    run = tmp_path / "run"
    failing = [*JOB, f"+callbacks.fail._target_={__name__}.FailAtStep", "+callbacks.fail.step=3"]
    # Lightning answers Ctrl-C by ignoring SIGINT and exiting with status 1.
    expected = SystemExit if error == "KeyboardInterrupt" else RuntimeError
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(expected):
            train(make_cfg(*failing, f"+callbacks.fail.error={error}"))
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert not (run / "results.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2

    _, objects = train(make_cfg(*JOB))  # started again in its folder: resumes at step 2
    assert objects["trainer"].global_step == 4 and sorted(objects["evaluation"].history) == [2, 4]
    assert not (run / "checkpoints").exists()


@pytest.mark.slow
def test_a_run_that_fails_while_saving_keeps_its_checkpoints(make_cfg, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("embedding_trainer.phases.report.write_results", refuse)
    with pytest.raises(OSError, match="disk full"):
        train(make_cfg(*JOB))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def _lightning_folder(folder):
    """A checkpoints/ folder as Lightning leaves it: two checkpoints, last.ckpt linking to one."""
    folder.mkdir(parents=True)
    (folder / "step2.ckpt").write_bytes(b"2" * 2_000_000)
    (folder / "step4.ckpt").write_bytes(b"4" * 3_000_000)
    (folder / "preempted.ckpt").write_bytes(b"p" * 1_000_000)
    (folder / "last.ckpt").symlink_to("step4.ckpt")


def test_keep_last_moves_the_linked_checkpoint_into_place_and_logs_what_it_freed(tmp_path, caplog):
    _lightning_folder(tmp_path / "checkpoints")
    with caplog.at_level(logging.INFO, logger="embedding_trainer.runs.checkpoints"):
        keep_checkpoints(tmp_path, "last", tmp_path / "model")
    (last,) = (tmp_path / "checkpoints").iterdir()
    assert last.name == "last.ckpt" and not last.is_symlink() and last.read_bytes() == b"4" * 3_000_000
    assert "Removed checkpoints/ but last.ckpt (3 MB)" in caplog.text


def test_keep_none_removes_the_folder_and_logs_its_size(tmp_path, caplog):
    _lightning_folder(tmp_path / "checkpoints")
    with caplog.at_level(logging.INFO, logger="embedding_trainer.runs.checkpoints"):
        keep_checkpoints(tmp_path, "none", None)
    assert not (tmp_path / "checkpoints").exists()
    assert "Removed checkpoints/ (6 MB): no model was saved (save_model=false)" in caplog.text


def test_keep_all_changes_nothing(tmp_path):
    _lightning_folder(tmp_path / "checkpoints")
    keep_checkpoints(tmp_path, "all", tmp_path / "model")
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "last.ckpt",
        "preempted.ckpt",
        "step2.ckpt",
        "step4.ckpt",
    ]


def test_an_unknown_keep_setting_is_refused_before_anything_loads(make_cfg, no_model_loading):
    with pytest.raises(ConfigError, match="checkpoints.keep=best is not a choice. Use one of none: "):
        train(make_cfg(*JOB, "checkpoints.keep=best"))
    assert set(checkpoints.KEEP) == {"none", "last", "all"}
