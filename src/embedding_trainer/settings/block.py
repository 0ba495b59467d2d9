"""A config block read into the dataclass of settings it describes."""

from dataclasses import fields
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.utils.errors import ConfigError

Settings = TypeVar("Settings")


def settings_from_block(settings_class: type[Settings], block: DictConfig, key: str) -> Settings:
    """`settings_class` built from config block `block` (found at `key`, such as `model.lora`) and
    checked by its `check()`.

    Raises:
        ConfigError: a key the settings do not have (naming the ones they do), or what `check()` raises.
    """
    try:
        settings = settings_class(**OmegaConf.to_container(block, resolve=True))
    except TypeError as error:
        known = ", ".join(field.name for field in fields(settings_class))
        raise ConfigError(f"{key}: {error}; its keys are {known}.") from None
    settings.check()
    return settings
