"""LoRA (`model.lora`) through the real train(cfg) on the tiny model: bad settings stop before any
model loads; only the adapters (and a loss's own head) train and reach the optimizer; the loss
families and modifiers train with it, with gradient checkpointing too; the saved folder loads with
plain `SentenceTransformer(path)` and embeds as the trained model does, with or without merging.
DDP and resume after preemption with LoRA: tests/runs/test_ddp.py and tests/runs/test_preemption.py."""

import math

import pytest
import torch
from sentence_transformers import SentenceTransformer

from conftest import FAST
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.models.lora import LoraSettings, add_lora
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

LORA = ["model/lora=default", "model.lora.r=4", "model.lora.alpha=8"]
# One real optimizer step: no warmup (a one-step warmup would take it at learning rate 0).
ONE_STEP = [*FAST, *LORA, "scheduler.warmup_ratio=0"]
TEXTS = ["what is the capital of france", "Paris is the capital of France.", "a cat sat on the mat"]


def _adapters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def _assert_only_adapters_trained(objects: dict, model_cache) -> None:
    """The model's trainable parameters (and those of a copy the loss trains) are its adapters, the
    optimizer holds exactly the trainable parameters of model and loss (a head of its own too),
    every adapter's B moved off zero, and the base weights are the untouched tiny model's."""
    module, model = objects["module"], objects["model"]
    for encoder in (m for m in module.modules() if isinstance(m, SentenceTransformer)):  # a loss's copy too
        trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
        assert trainable and all("lora_" in name for name in trainable), sorted(trainable)[:5]
    optimized = {id(p) for group in objects["trainer"].optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.parameters() if p.requires_grad}
    for name, weight in _adapters(model).items():
        if "lora_B" in name:
            assert weight.abs().sum() > 0, f"{name} never trained (no gradient reached it)"
    base = build_tiny_model(str(model_cache)).state_dict()
    for name, weight in model.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(weight, base[name.replace(".base_layer", "")]), name


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ["model/lora=default", "model.lora.r=0"],
            "model.lora.r (the adapters' rank) must be a whole number",
        ),
        (
            ["model/lora=default", "model.lora.r=2.5"],
            "model.lora.r (the adapters' rank) must be a whole number",
        ),
        (["model/lora=default", "model.lora.alpha=0"], "model.lora.alpha must be a number above 0"),
        (["model/lora=default", "model.lora.alpha=-16"], "model.lora.alpha must be a number above 0"),
        (["model/lora=default", "model.lora.dropout=1.0"], "model.lora.dropout must be in [0, 1)"),
        (["model/lora=default", "model.lora.target_modules=[]"], "model.lora.target_modules must be"),
        (["model.lora={r:8,rank:4}"], "unexpected keyword argument 'rank'; its keys are r, alpha"),
        (["model.lora=8"], "model.lora must be a block of LoRA settings or null"),
    ],
    ids=["r=0", "r=2.5", "alpha=0", "alpha<0", "dropout=1", "no-targets", "unknown-key", "not-a-block"],
)
def test_bad_lora_settings_fail_before_any_model_loads(make_cfg, no_model_loading, overrides, fragment):
    with pytest.raises(ConfigError, match="model.lora") as caught:
        train(make_cfg(*FAST, *overrides))
    assert fragment in str(caught.value)


def test_lora_is_off_by_default_and_a_block_without_every_key_takes_the_defaults(make_cfg):
    assert make_cfg().model.lora is None
    cfg = make_cfg("model/lora=default")
    assert cfg.model.lora.r == 8 and list(cfg.model.lora.target_modules) == [
        "query",
        "key",
        "value",
        "output.dense",
        "intermediate.dense",
    ]
    assert make_cfg("model.lora={r:4}").model.lora.r == 4  # alpha, dropout, ...: LoraSettings' defaults


@pytest.mark.slow
def test_lora_with_gradient_checkpointing_trains_only_the_adapters_and_saves_a_loadable_adapter(
    make_cfg, model_cache, tmp_path
):
    run = tmp_path / "lora_run"
    cfg = make_cfg(*ONE_STEP, "model.encoder.gradient_checkpointing=true", output_dir=run)
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1 and math.isfinite(metrics["val/score"])
    _assert_only_adapters_trained(objects, model_cache)

    # Gradient checkpointing recomputes the forward pass: the adapters end as without it.
    _, plain = train(make_cfg(*ONE_STEP, output_dir=tmp_path / "no_checkpointing"))
    reference = _adapters(plain["model"])
    for name, weight in _adapters(objects["model"]).items():
        torch.testing.assert_close(weight, reference[name], rtol=1e-5, atol=1e-7)

    # The report states what trained; the folder is the adapter over the base model, and loads as is.
    report = (run / "report.md").read_text()
    assert "| trained parameters | " in report and "LoRA r=4, alpha=8, dropout=0.1" in report
    files = {path.name for path in (run / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    model = objects["model"].eval()
    reloaded = SentenceTransformer(str(run / "model"))
    torch.testing.assert_close(
        reloaded.encode(TEXTS, convert_to_tensor=True),
        model.encode(TEXTS, convert_to_tensor=True),
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.slow
def test_merge_on_save_writes_a_plain_folder_that_embeds_as_the_adapter_does(make_cfg, tmp_path):
    adapter_run, merged_run = tmp_path / "adapter", tmp_path / "merged"
    _, with_adapter = train(make_cfg(*ONE_STEP, output_dir=adapter_run))
    expected = with_adapter["model"].eval().encode(TEXTS, convert_to_tensor=True)
    _, merged = train(make_cfg(*ONE_STEP, "model.lora.merge_on_save=true", output_dir=merged_run))

    files = {path.name for path in (merged_run / "model").iterdir()}
    assert "model.safetensors" in files and not any(name.startswith("adapter") for name in files)
    assert not any("lora_" in name for name, _ in merged["model"].named_parameters())
    reloaded = SentenceTransformer(str(merged_run / "model"))
    assert not any("lora_" in name for name, _ in reloaded.named_parameters())
    for model in (reloaded, merged["model"].eval(), SentenceTransformer(str(adapter_run / "model"))):
        torch.testing.assert_close(model.encode(TEXTS, convert_to_tensor=True), expected, rtol=0, atol=1e-5)


def test_target_modules_the_model_lacks_fail_with_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="model.lora cannot adapt this model: .*q_proj"):
        train(make_cfg(*FAST, "model/lora=default", "model.lora.target_modules=[q_proj,v_proj]"))


@pytest.mark.parametrize(
    ("dataset_type", "loss", "modifier"),
    [
        ("pair", "mnrl", "matryoshka"),
        ("score", "cosent", "matryoshka"),
        ("triplet", "triplet", "matryoshka"),
        ("single_class", "batch_hard_triplet", "none"),
        ("pair_class", "softmax", "none"),  # its classifier head trains next to the adapters
        ("pair", "cached_mnrl", "matryoshka"),  # GradCache: embeddings without gradients, then replayed
        ("pair", "mnrl", "adaptive_layer"),  # runs the encoder's first layers only
        ("pair", "mnrl", "matryoshka_2d"),
        ("single", "denoising_autoencoder", "none"),  # a decoder tied to the encoder's weights
        ("single", "contrastive_tension", "none"),  # trains a copy of the model too
    ],
    ids=lambda value: value,
)
@pytest.mark.slow
def test_loss_families_and_modifiers_train_with_lora(make_cfg, model_cache, dataset_type, loss, modifier):
    cfg = make_cfg(*ONE_STEP, f"dataset_type={dataset_type}", f"loss={loss}", f"modifier={modifier}")
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1 and math.isfinite(metrics["val/score"])
    _assert_only_adapters_trained(objects, model_cache)


@pytest.mark.slow
def test_adapters_train_in_float32_over_bfloat16_weights(model_cache):
    """A bf16 base (a decoder on GPU) gets float32 adapters, which the optimizer can update in small steps."""
    model = build_tiny_model(str(model_cache)).to(torch.bfloat16)
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    add_lora(model, lora, seed=0)
    adapters = {name: p.dtype for name, p in model.named_parameters() if "lora_" in name}
    assert adapters and set(adapters.values()) == {torch.float32}
    assert model.encode(TEXTS, convert_to_tensor=True).shape == (3, 32)  # bf16 base, fp32 adapters: it runs
