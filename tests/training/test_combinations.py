"""Every supported (dataset_type, loss, modifier) combination trains one batch and evaluates,
through the real train(cfg) on the tiny offline model; every row of the compatibility table is there.
Each run trains the loss its configs name (the modifier's class around the loss's class) and its step
really moves the model's weights, those without weight decay included (a gradient, not decay alone)."""

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import FAST
from embedding_trainer.settings.family import CROSS_ENCODER, loss_family
from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.train import train
from embedding_trainer.training.module import NO_DECAY_MARKERS
from embedding_trainer.training.regularizers import VarianceRegularizer
from embedding_trainer.training.relevance_mask import KnownRelevanceLoss


def _supported_combinations() -> list[tuple[str, str, str]]:
    modifiers = {p.stem: OmegaConf.load(p) for p in sorted((CONFIG_DIR / "modifier").glob("*.yaml"))}
    combinations = []
    for loss_path in sorted((CONFIG_DIR / "loss").glob("*.yaml")):
        loss = OmegaConf.load(loss_path)
        for dataset_type in loss.accepts:
            for modifier_name, modifier in modifiers.items():
                if loss_family(loss) == CROSS_ENCODER and modifier.get("_target_"):
                    continue  # a cross-encoder's score has no dimensions to truncate
                if loss.gradient_cache and not modifier.wraps_gradient_cache:
                    continue
                if loss.get("fixed_dimension") and modifier.truncates_embeddings:
                    continue
                combinations.append((dataset_type, loss_path.stem, modifier_name))
    return combinations


COMBINATIONS = _supported_combinations()
TEACHER = ["teacher=tiny", "teacher.encoder.seed=1"]  # the tiny model with other weights

# The compatibility table users expect (GIST in sentence-transformers takes 2 or 3 columns, so no n_tuple).
EXPECTED_TABLE = {
    *(
        ("pair", loss)
        for loss in [
            "mnrl",
            "cached_mnrl",
            "mnsrl",
            "cached_mnsrl",
            "megabatch_margin",
            "gist",
            "cached_gist",
            "infonce",
        ]
    ),
    *(("triplet", loss) for loss in ["mnrl", "cached_mnrl", "triplet", "gist", "cached_gist", "infonce"]),
    *(("n_tuple", loss) for loss in ["mnrl", "cached_mnrl", "infonce"]),
    # Distillation: learn from a teacher's outputs (a teacher option is added to these runs).
    *(("single", "mse"), ("pair", "mse")),
    *(
        (dataset_type, loss)
        for dataset_type in ["triplet", "n_tuple"]
        for loss in ["mse", "margin_mse", "distill_kl"]
    ),
    *(("score", loss) for loss in ["cosent", "angle", "cosine_similarity"]),
    ("pair_class", "softmax"),
    ("pair_binary", "contrastive"),
    ("pair_binary", "online_contrastive"),
    ("single", "contrastive_tension"),
    ("single", "denoising_autoencoder"),
    *(
        ("single_class", loss)
        for loss in [
            "batch_all_triplet",
            "batch_hard_soft_margin_triplet",
            "batch_hard_triplet",
            "batch_semi_hard_triplet",
            "arcface",
        ]
    ),
    ("anchor_anchor", "contrastive_tension_in_batch"),
    ("denoising", "denoising_autoencoder"),
    # Cross-encoders (model=tiny_cross_encoder in these runs): sentence-transformers' cross-encoder losses.
    *(("pair_binary", loss) for loss in ["ce_bce", "ce_mse"]),
    *(("score", loss) for loss in ["ce_bce", "ce_mse"]),
    *((dataset_type, "ce_mnrl") for dataset_type in ["pair", "triplet", "n_tuple"]),
    *(("listwise", loss) for loss in ["ce_listnet", "ce_listmle", "ce_plistmle", "ce_lambda", "ce_ranknet"]),
    ("listwise", "ce_margin_mse"),
}


class WeightsProbe(pl.Callback):
    """The model's trainable weights when training starts and when it ends (before the run restores the
    checkpoint it keeps, which may be the baseline): added to each run as `callbacks.weights_probe`."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.before = {
            n: p.detach().clone() for n, p in pl_module.model.named_parameters() if p.requires_grad
        }

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.after = {
            n: p.detach().clone() for n, p in pl_module.model.named_parameters() if n in self.before
        }


PROBE = [f"+callbacks.weights_probe._target_={__name__}.WeightsProbe"]


# The harness's wrappers around a configured loss: the known-relevance mask and a regularizer.
WRAPPERS = (KnownRelevanceLoss, VarianceRegularizer)


MODIFIER_CLASSES = {
    get_class(target)
    for path in (CONFIG_DIR / "modifier").glob("*.yaml")
    if (target := OmegaConf.load(path).get("_target_"))
}


def loss_classes(loss: torch.nn.Module) -> list[type]:
    """The loss classes from `loss` inward along `.loss`, the harness's WRAPPERS left out (past the
    configured loss the chain may go on into its own parts: a cached loss holds its plain form)."""
    chain = []
    while isinstance(loss, torch.nn.Module):
        if not isinstance(loss, WRAPPERS):
            chain.append(type(loss))
        loss = getattr(loss, "loss", None)
    return chain


def test_the_table_covers_this_issues_losses():
    rows = {(dataset_type, loss) for dataset_type, loss, _ in COMBINATIONS}
    assert rows == EXPECTED_TABLE


@pytest.mark.parametrize(
    ("dataset_type", "loss", "modifier"), COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS]
)
@pytest.mark.slow
def test_combination_trains_and_evaluates(make_cfg, dataset_type, loss, modifier):
    loss_cfg = OmegaConf.load(CONFIG_DIR / "loss" / f"{loss}.yaml")
    teacher = TEACHER if loss_cfg.get("teacher_targets") else []
    model = "model=tiny_cross_encoder" if loss_family(loss_cfg) == CROSS_ENCODER else "model=tiny"
    fast = [model if option.startswith("model=") else option for option in FAST]
    cfg = make_cfg(
        *fast, f"dataset_type={dataset_type}", f"loss={loss}", f"modifier={modifier}", *teacher, *PROBE
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1

    # The loss trained is the configured one: the modifier's class outermost, then (past the modifier
    # classes it builds: Matryoshka2dLoss holds a MatryoshkaLoss) exactly the loss config's class.
    chain = loss_classes(objects["module"].loss)
    loss_class = get_class(OmegaConf.load(CONFIG_DIR / "loss" / f"{loss}.yaml")._target_)
    modifier_target = OmegaConf.load(CONFIG_DIR / "modifier" / f"{modifier}.yaml").get("_target_")
    assert chain[0] is (get_class(modifier_target) if modifier_target else loss_class), chain
    assert next(c for c in chain if c not in MODIFIER_CLASSES) is loss_class, chain

    # The training step moved the model's weights, a parameter without weight decay among them.
    (probe,) = [callback for callback in objects["trainer"].callbacks if isinstance(callback, WeightsProbe)]
    changed = [name for name, before in probe.before.items() if not torch.equal(before, probe.after[name])]
    assert any(any(marker in name for marker in NO_DECAY_MARKERS) for name in changed), changed
    assert any(".layer." in name and name.endswith("weight") for name in changed), changed
    assert math.isfinite(metrics["val/score"])
    dims = list(cfg.matryoshka_dims)
    evaluator = objects["evaluation"].evaluator
    evaluated = set(objects["evaluation"].baseline)
    # The softmax classifier reads full-dimension embeddings only; every other evaluator scores each dim.
    assert evaluated == ({dims[0]} if evaluator.name == "softmax" else set(dims))
    for dim in evaluated:
        assert f"val/{evaluator.name}_{evaluator.primary_metric}_dim{dim}" in metrics
