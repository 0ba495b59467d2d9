"""ModelSettings: a model (or teacher) block read once into what loading, LoRA and the reports need."""

import dataclasses
from pathlib import Path

import pytest

from embedding_trainer.models.loading import load_model, model_loader
from embedding_trainer.models.lora import LoraSettings
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.utils.errors import ConfigError


def test_a_model_block_reads_into_frozen_settings(make_cfg):
    cfg = make_cfg("model=tiny")
    settings = ModelSettings.from_config(cfg.model)
    assert (settings.dimension, settings.key, settings.hub_id, settings.name_or_path, settings.lora) == (
        32,
        "model",
        None,
        None,
        None,
    )
    assert settings.encoder._target_ == "embedding_trainer.models.loading.build_tiny_model"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dimension = 64


def test_a_packaged_model_names_its_hub_id_and_folder(make_cfg):
    settings = ModelSettings.from_config(make_cfg("model=minilm").model)
    assert settings.hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert settings.name_or_path is not None and Path(settings.name_or_path).is_dir()  # the packaged folder


def test_the_lora_block_is_read_and_checked_with_the_model(make_cfg):
    settings = ModelSettings.from_config(make_cfg("model=tiny", "model/lora=default", "model.lora.r=4").model)
    assert isinstance(settings.lora, LoraSettings) and settings.lora.r == 4
    with pytest.raises(ConfigError, match="model.lora.r .*must be a whole number of at least 1"):
        ModelSettings.from_config(make_cfg("model=tiny", "model/lora=default", "model.lora.r=0").model)


def test_a_wrong_dimension_names_the_block_to_fix(make_cfg):
    cfg = make_cfg("model=tiny", "teacher=tiny", "teacher.dimension=64")
    with pytest.raises(ConfigError, match=r"teacher.dimension=64 .* set teacher.dimension=32"):
        load_model(ModelSettings.from_config(cfg.teacher, "teacher"))


def test_the_loader_loads_once(make_cfg):
    run_model = model_loader(ModelSettings.from_config(make_cfg("model=tiny").model))
    assert run_model() is run_model() and run_model().get_embedding_dimension() == 32
