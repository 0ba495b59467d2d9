"""The validation hold-out as a data stage (`data.stages.holdout`): its check refuses bad settings before
anything loads, it runs in its declared place (after the synthetic queries, before the mining), and it holds
out exactly the rows the split always held out."""

import datasets
import pytest

from conftest import FAST
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.splits import train_and_validation
from embedding_trainer.data.stages import LOAD_SLOTS, SLOTS, StageContext, build_stages, stage_classes
from embedding_trainer.data.stages.hard_negatives import HardNegativeMining
from embedding_trainer.data.stages.holdout import ValidationHoldout
from embedding_trainer.data.stages.synthetic_queries import SyntheticQueriesStage
from embedding_trainer.utils.errors import DataError


def rows_of(anchors: list[str], chunk_ids: list[str] | None = None) -> datasets.Dataset:
    columns = {"anchor": anchors, "positive": [f"doc {a}" for a in anchors]}
    return datasets.Dataset.from_dict({**columns, **({"chunk_id": chunk_ids} if chunk_ids else {})})


ANCHORS = [f"q{index % 23}" for index in range(60)]


def test_the_hold_out_runs_after_the_synthetic_queries_and_before_the_mining():
    assert SLOTS.index("synthetic_queries") < SLOTS.index("holdout") < SLOTS.index("mining")
    assert LOAD_SLOTS == ("synthetic_queries", "holdout")
    classes = stage_classes()
    assert classes.index(SyntheticQueriesStage) < classes.index(ValidationHoldout)
    assert classes.index(ValidationHoldout) < classes.index(HardNegativeMining)


@pytest.mark.parametrize(("size", "max_samples"), [(0.2, None), (3, None), (0.1, 20), (5, 55)])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_stage_holds_out_the_rows_the_split_holds_out(size, max_samples, seed):
    rows = rows_of(ANCHORS)
    stage = ValidationHoldout(size, max_samples)
    kept = stage.run(rows, StageContext(seed=seed))
    split = train_and_validation(rows, max_samples, size, seed)
    assert kept["anchor"] == split.kept["anchor"] and stage.held["anchor"] == split.held["anchor"]
    assert set(kept["anchor"]).isdisjoint(stage.held["anchor"])
    assert stage.note == split.note and stage.notes(None) == [split.note]


def test_generated_pairs_are_held_out_by_passage():
    chunks = [f"c{index % 9}" for index in range(60)]
    stage = ValidationHoldout(2)
    kept = stage.run(rows_of(ANCHORS, chunks), StageContext(seed=3))
    assert len(set(stage.held["chunk_id"])) == 2 and set(kept["chunk_id"]).isdisjoint(stage.held["chunk_id"])
    assert "validation passages" in stage.note


@pytest.mark.parametrize("size", [-3, 0, "a tenth", True])
def test_its_check_refuses_a_validation_size_that_is_no_positive_number(make_cfg, size):
    cfg = make_cfg(*FAST, f"data.validation_size={size}")
    with pytest.raises(DataError, match=r"data.validation_size must be a fraction in \(0, 1\) or a count"):
        ValidationHoldout.check(cfg)


def test_given_validation_data_there_is_no_hold_out(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "data.validation_size=-3", f"data.validation_path={tmp_path}")
    ValidationHoldout.check(cfg)  # unused, so unchecked
    assert ValidationHoldout.from_config(cfg) is None
    assert ValidationHoldout.from_config(make_cfg(*FAST, "data.validation_size=null")) is None
    held = [
        stage for stage in build_stages(make_cfg(*FAST, "data.validation_size=5")) if stage.slot == "holdout"
    ]
    assert [(stage.size, type(stage)) for stage in held] == [(5, ValidationHoldout)]


def test_the_data_module_uses_the_stage_s_held_rows_as_validation_data(make_cfg):
    cfg = make_cfg(*FAST, "data.validation_size=6", "data.max_samples=40")
    datamodule = build_datamodule(cfg)
    datamodule.load()
    train_rows = datamodule.train_dataset["anchor"]
    validation = datamodule.validation_data.rows["anchor"]
    assert len(set(validation)) == 6 and set(validation).isdisjoint(train_rows) and len(train_rows) == 40
    again = build_datamodule(cfg)
    again.load()
    assert again.validation_data.rows["anchor"] == validation and again.train_dataset["anchor"] == train_rows
