"""LoRA: low-rank adapters (PEFT) on the transformer of a SentenceTransformer, added the way
sentence-transformers supports them (`SentenceTransformer.add_adapter`), so that only the adapters
(and any loss head) train, and the saved folder loads with plain `SentenceTransformer(path)`.

The `model.lora` block (null: off) holds `LoraSettings`. A saved LoRA model is the adapter alone
(`adapter_config.json`, `adapter_model.safetensors`) over the base model, which it names by the
folder the base was loaded from (`base_model_name_or_path`); with `merge_on_save` the adapters are
merged into the weights first and the folder is a plain, self-contained model."""

from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real

import torch
from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SentenceTransformer

from embedding_trainer.settings.block import settings_from_block
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class LoraSettings:
    """`model.lora`: adapters of rank `r` scaled by `alpha / r`, with `dropout` on their input, on
    the linear layers whose names end in one of `target_modules` (or match it, a regular expression;
    null: PEFT's choice for the architecture, e.g. query and value for BERT; the default: every linear
    layer of a BERT-like encoder's blocks, not its pooler, which sentence-transformers never runs).
    `merge_on_save`: merge the adapters into the weights before saving (a plain model folder, no
    adapter files)."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | str | None = field(
        default_factory=lambda: ["query", "key", "value", "output.dense", "intermediate.dense"]
    )
    merge_on_save: bool = False

    def check(self) -> None:
        """Raise ConfigError for settings that cannot build adapters."""
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(
                f"model.lora.r (the adapters' rank) must be a whole number of at least 1, got {self.r!r}; "
                "typical values are 4 to 64 (model.lora=null: no LoRA)."
            )
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, Real) or not self.alpha > 0:
            raise ConfigError(
                f"model.lora.alpha must be a number above 0 (the adapters are scaled by alpha / r), got "
                f"{self.alpha!r}; a common choice is twice model.lora.r."
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, Real) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model.lora.dropout must be in [0, 1), got {self.dropout!r}.")
        modules = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        if modules is not None and (
            not isinstance(modules, list)
            or not modules
            or not all(isinstance(name, str) and name for name in modules)
        ):
            raise ConfigError(
                "model.lora.target_modules must be a non-empty list of module names (e.g. [query, value]), a "
                f"regular expression, or null, got {self.target_modules!r}."
            )
        if not isinstance(self.merge_on_save, bool):
            raise ConfigError(f"model.lora.merge_on_save must be true or false, got {self.merge_on_save!r}.")

    def peft_config(self):
        """The `peft.LoraConfig` of these settings."""
        from peft import LoraConfig  # imported only when LoRA is on

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
        )

    def describe(self) -> str:
        """One line: rank, alpha, dropout, target modules, merging."""
        targets = self.target_modules
        where = ", ".join(targets) if isinstance(targets, list) else (targets or "PEFT's default modules")
        merged = "; merged into the weights on save" if self.merge_on_save else ""
        return f"LoRA r={self.r}, alpha={self.alpha}, dropout={self.dropout} on {where}{merged}"


def lora_settings(model_cfg: DictConfig) -> LoraSettings | None:
    """The checked settings of the `lora` block of the model config; None when it is absent or null.

    Raises:
        ConfigError: an unknown key or a value that cannot build adapters.
    """
    block = model_cfg.get("lora")
    if block is None:
        return None
    if not OmegaConf.is_dict(block):
        raise ConfigError(
            f"model.lora must be a block of LoRA settings or null (off), got {block!r}; turn LoRA on with "
            "model/lora=default (then e.g. model.lora.r=16) or 'model.lora={r:16}'."
        )
    settings = settings_from_block(LoraSettings, block, "model.lora")
    try:
        settings.peft_config()  # PEFT's own checks of the combination
    except ImportError:
        raise ConfigError(
            "model.lora needs the peft package: pip install peft (or reinstall embedding-trainer)."
        ) from None
    except ValueError as error:
        raise ConfigError(f"model.lora: PEFT refuses these settings: {error}") from None
    return settings


def check_lora(cfg: DictConfig) -> None:
    """Raise ConfigError for a `model.lora` block that cannot work (before any model loads)."""
    lora_settings(cfg.model)


def add_lora(model: SentenceTransformer, settings: LoraSettings | None, seed: int) -> SentenceTransformer:
    """Add the adapters of `settings` (`model.lora`) to `model` (unchanged when None), in place: its
    transformer's own weights are frozen, the adapters start as the identity (B = 0, A drawn from
    `seed` on a forked random state, so the run's random stream goes on as without LoRA). The adapters'
    weights are float32 whatever the base weights' dtype (a decoder's bf16 on GPU), as optimizers need.

    Raises:
        ConfigError: the model has no transformer PEFT can adapt, or no module matches `target_modules`.
    """
    if settings is None:
        return model
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model.add_adapter(settings.peft_config())
    except ValueError as error:  # no Transformer module, or no module matches target_modules
        raise ConfigError(
            f"model.lora cannot adapt this model: {error} Set model.lora.target_modules to names of its "
            "linear layers (see print(model)), or model.lora=null."
        ) from None
    for name, parameter in model.named_parameters():
        if "lora_" in name:  # PEFT gives them the base layer's dtype: bf16 updates would lose small steps
            parameter.data = parameter.data.float()
    return model


def build_loss_with_lora(
    model: SentenceTransformer,
    lora: LoraSettings | None,
    ties_encoder: bool,
    seed: int,
    build_loss: Callable[[], torch.nn.Module],
) -> torch.nn.Module:
    """The loss `build_loss()` builds around `model`, with the adapters of `lora` (`model.lora`) added to
    `model` (`add_lora`; none when it is None). They are added first, so that a loss that trains a
    copy of the model (contrastive tension) copies them too; but after the loss for one that ties
    weights of its own to the encoder's (`ties_encoder`, a loss config's `tie_encoder_decoder`: TSDAE's
    decoder then shares the encoder's frozen base weights, and its own cross-attention trains)."""
    if ties_encoder:
        loss = build_loss()
        add_lora(model, lora, seed)
        return loss
    add_lora(model, lora, seed)
    return build_loss()


def merge_lora(model: SentenceTransformer) -> None:
    """Merge `model`'s adapters into its weights and remove them, in place: the model computes the
    same embeddings, its layers are the base model's own again and it saves as a plain model folder."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    transformer = model.transformers_model
    adapted = [
        (name, module) for name, module in transformer.named_modules() if isinstance(module, BaseTunerLayer)
    ]
    for name, module in adapted:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(transformer.get_submodule(parent_name), child, module.get_base_layer())
    if hasattr(transformer, "peft_config"):
        del transformer.peft_config
    transformer._hf_peft_config_loaded = False
    model.requires_grad_(True)  # as a plain model loads
    log.info(f"Merged the LoRA adapters of {len(adapted)} layers into the weights")


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters of a module (what the optimizer sees, and all of it)."""

    trainable: int
    total: int

    @classmethod
    def of(cls, module: torch.nn.Module) -> "ParameterCount":
        parameters = list(module.parameters())
        return cls(sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters))

    def describe(self) -> str:
        share = 100 * self.trainable / self.total if self.total else 0.0
        return f"{self.trainable:,} of {self.total:,} ({share:.2f}%)"


def trained_parameters(count: ParameterCount | None, settings: LoraSettings | None) -> str | None:
    """The settings table's line on what trained: `count` (trainable of total) and the LoRA
    `settings` (None: no LoRA); None when neither is known or set."""
    parts = [part for part in (count and count.describe(), settings and settings.describe()) if part]
    return ", ".join(parts) or None
