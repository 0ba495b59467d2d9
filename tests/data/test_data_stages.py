"""The data stages' protocol (`embedding_trainer.data.stages`): one declared order, every stage's check
before anything loads, and a new stage found from its module alone."""

import pytest

from embedding_trainer.data.stages import SLOTS, DataStage, build_stages, stage_classes, trained_dataset_type
from embedding_trainer.data.stages.hard_negatives import HardNegativeMining
from embedding_trainer.data.stages.teacher import TeacherStage
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]


class RefusingStage(DataStage):
    """A stage defined outside the package, as a new module would be: it refuses while `refuse` is set."""

    slot = "mining"
    refuse = False

    @classmethod
    def check(cls, cfg):
        if cls.refuse:
            raise ConfigError("the refusing stage refuses")

    @classmethod
    def from_config(cls, cfg):
        return None

    def run(self, rows, context):
        return rows


@pytest.fixture
def refusing_stage():
    RefusingStage.refuse = True
    yield
    RefusingStage.refuse = False


def test_the_stages_run_in_the_declared_order():
    slots = [cls.slot for cls in stage_classes()]
    assert slots == sorted(slots, key=SLOTS.index)
    assert SLOTS.index("mining") < SLOTS.index("leakage") < SLOTS.index("targets")


def test_a_new_stage_is_checked_before_anything_loads(make_cfg, no_model_loading, refusing_stage, tmp_path):
    assert RefusingStage in stage_classes()
    with pytest.raises(ConfigError, match="the refusing stage refuses"):
        train(make_cfg(*TINY, output_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_mining_makes_pairs_n_tuples_and_is_built_before_the_teacher(make_cfg):
    cfg = make_cfg(*TINY, "data.hard_negatives.num_negatives=2", "loss=mnrl")
    assert trained_dataset_type(cfg) == "n_tuple"
    assert [type(stage) for stage in build_stages(cfg)] == [HardNegativeMining]
    assert trained_dataset_type(make_cfg(*TINY)) == make_cfg(*TINY).dataset_type.name
    assert TeacherStage.from_config(make_cfg(*TINY)) is None
