"""`ModelSettings`: a `model` config block (or the `teacher` one, a model option too) read once, at the
settings edge, into what loading the model (`models.loading.load_model`), its LoRA adapters and the
reports need."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from embedding_trainer.models.lora import LoraSettings, lora_settings


@dataclass(frozen=True)
class ModelSettings:
    """The model of a `model` config block found at `key` (`model`, `teacher`; error messages name it):

    - `encoder`: the block's `encoder`, the Hydra `_target_` node `load_model` instantiates (its
      arguments are its factory's: `load_pretrained`, `from_transformer`, `build_tiny_model`, ...);
    - `dimension`: the dimension the model must embed in (None: unknown, e.g. a saved model's that could
      not be read; the loaded model's then fails the check);
    - `hub_id`: its Hugging Face Hub id (None: a local folder or a model built by a factory);
    - `name_or_path`: the folder or hub id its encoder loads (None: built by a factory);
    - `lora`: its checked `model.lora` settings (None: no LoRA)."""

    encoder: DictConfig
    dimension: int | None
    key: str = "model"
    hub_id: str | None = None
    name_or_path: str | None = None
    lora: LoraSettings | None = None

    @classmethod
    def from_config(cls, model_cfg: DictConfig, key: str = "model") -> "ModelSettings":
        """The settings of `model_cfg`, the block at `key` of the composed config.

        Raises:
            ConfigError: a `lora` block that cannot build adapters (`lora_settings`).
        """
        name = model_cfg.encoder.get("name_or_path")
        name_or_path = None if name is None else str(name)
        hub_id = model_cfg.get("hub_id")
        if not hub_id:  # a model loaded from the hub by `load_pretrained` or `from_transformer`
            hub_id = name_or_path if name_or_path and not Path(name_or_path).is_dir() else None
        return cls(
            encoder=model_cfg.encoder,
            dimension=model_cfg.dimension,
            key=key,
            hub_id=str(hub_id) if hub_id else None,
            name_or_path=name_or_path,
            lora=lora_settings(model_cfg),
        )
