"""The renamed config keys (issue 28, one name per meaning): `evaluation.objective` is now
`evaluation.selection_score`; `evaluation.general` and `evaluation.general_max_drop` are now
`evaluation.forgetting_guard` and `evaluation.forgetting_max_drop`. The old names still work for now, with
one deprecation line; an old and a new name given different values is a ConfigError."""

import logging

import pytest
from omegaconf import OmegaConf

from conftest import FAST
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.settings.evaluation import EvaluationSettings, SelectionScore
from embedding_trainer.settings.renamed_keys import RENAMED_KEYS, alias, fold_renamed_keys
from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.utils.errors import ConfigError

JOB = [*FAST, "dataset_type=score", "loss=cosent"]
VALUES = {
    "evaluation.objective.metric": "spearman_cosine",
    "evaluation.objective.dims": "[16]",
    "evaluation.general": "${sts_benchmark_evaluator}",
    "evaluation.general_max_drop": "0.05",
}
OLD = [f"{old}={value}" for old, value in VALUES.items()]
NEW = [f"{RENAMED_KEYS[old]}={value}" for old, value in VALUES.items()]


def _deprecations(caplog) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if "Deprecated config keys" in record.getMessage()
    ]


def test_the_old_keys_compose_the_same_run_as_the_new_ones_with_one_deprecation_line(make_cfg, caplog):
    new = make_cfg(*JOB, *NEW)
    old = make_cfg(*JOB, *OLD)
    with caplog.at_level(logging.WARNING):
        validate_config(new)
        assert not _deprecations(caplog)
        validate_config(old)
        settings = EvaluationSettings.from_config(old)  # folds again: nothing left to fold, no second line
    [line] = _deprecations(caplog)
    assert all(f"{old_key} -> {new_key}" in line for old_key, new_key in RENAMED_KEYS.items())
    assert OmegaConf.to_container(old) == OmegaConf.to_container(new)
    assert settings == EvaluationSettings.from_config(new)
    assert settings.selection_score == SelectionScore("spearman_cosine", (16,))
    assert settings.forgetting_guard.path.endswith("stsb_test.jsonl") and settings.forgetting_max_drop == 0.05


def test_an_old_key_turns_the_guard_off_and_overrides_a_debug_option_as_before(make_cfg, caplog):
    cfg = make_cfg("model=tiny", "evaluation.general=null")
    with caplog.at_level(logging.WARNING):
        fold_renamed_keys(cfg)
    assert cfg.evaluation.forgetting_guard is None and cfg.evaluation.general is None
    assert len(_deprecations(caplog)) == 1
    # debug=fdr turns the guard off (forgetting_guard: null); the old name on the command line still wins.
    smoke = make_cfg("model=tiny", "debug=fdr", "evaluation.general=${sts_benchmark_evaluator}")
    fold_renamed_keys(smoke)
    assert smoke.evaluation.forgetting_guard.path.endswith("stsb_test.jsonl")


def test_an_unset_old_key_reads_as_its_new_key(make_cfg):
    cfg = make_cfg("model=tiny", "evaluation.forgetting_max_drop=0.1", "evaluation.selection_score.dims=[8]")
    assert cfg.evaluation.general_max_drop == 0.1 and list(cfg.evaluation.objective.dims) == [8]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("evaluation.objective.metric=spearman_cosine", "evaluation.selection_score.metric=pearson_cosine"),
        ("evaluation.objective.dims=[16]", "evaluation.selection_score.dims=[8]"),
        ("evaluation.general=null", "evaluation.forgetting_guard=${dataset_type.evaluator}"),
        ("evaluation.general_max_drop=0.05", "evaluation.forgetting_max_drop=0.1"),
    ],
)
def test_an_old_and_a_new_key_set_to_different_values_say_which_to_keep(make_cfg, old, new):
    old_key, new_key = old.split("=")[0], new.split("=")[0]
    with pytest.raises(ConfigError) as caught:
        validate_config(make_cfg(*JOB, old, new))
    message = str(caught.value)
    assert f"{old_key} is the deprecated name of {new_key}" in message
    assert f"keep {new_key}=<the value you mean> and remove {old_key}" in message


def test_an_old_and_a_new_key_set_to_the_same_value_agree(make_cfg):
    cfg = make_cfg(*JOB, "evaluation.objective.dims=[16]", "evaluation.selection_score.dims=[16]")
    validate_config(cfg)
    assert list(cfg.evaluation.selection_score.dims) == [16]


def test_the_shipped_configs_name_only_the_new_keys():
    """conf/train.yaml keeps each old key as the alias of its new key; no other config sets an old key."""
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for old, new in RENAMED_KEYS.items():
            node = raw
            for part in old.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            assert node == (alias(new) if path == CONFIG_DIR / "train.yaml" else None), (path, old)
