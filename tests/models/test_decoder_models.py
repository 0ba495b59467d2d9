"""Decoder (LLM) embedders: model=tiny_decoder (a random Qwen3 built offline) and
model=qwen3_embedding_0_6b. Their tokenizers pad on the left and end every text with an end token
(EOS appended by the harness when the tokenizer does not), saved with the model; a text's last-token
embedding does not depend on its batch; the default job trains the tiny decoder with LoRA, evaluates
every dimension, saves, and the folder reloads with plain `SentenceTransformer(path)`; the real
model fails fast and clearly without the hub."""

import json
import math
import time

import pytest
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from sentence_transformers import SentenceTransformer
from tokenizers import processors
from transformers import AutoTokenizer

from embedding_trainer.models import decoders
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ModelLoadError

CORPUS = str(PROJECT_ROOT / "data" / "derived" / "stsb_sentences.jsonl")
FLOAT32 = {"cuda": "float32", "cpu": "float32"}
TEXTS = ["a short one", "a somewhat longer sentence about the sea and the rain", "cats", "two words"]
QWEN3 = "Qwen/Qwen3-Embedding-0.6B"


@pytest.fixture
def tiny_decoder(model_cache):
    return decoders.build_tiny_decoder(str(model_cache), CORPUS, FLOAT32).eval()


def assert_decoder_tokenizer(tokenizer) -> None:
    """Left padding, and every text of a padded batch ends with the EOS token, truncated ones too."""
    assert tokenizer.padding_side == "left"
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (batch["input_ids"][:, -1] == tokenizer.eos_token_id).all()
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][:, 0].all()
    truncated = tokenizer(TEXTS[1], truncation=True, max_length=4)["input_ids"]
    assert len(truncated) == 4 and truncated[-1] == tokenizer.eos_token_id


def test_the_tokenizer_appends_eos_and_pads_on_the_left_in_the_saved_model_too(
    model_cache, tiny_decoder, tmp_path
):
    raw = AutoTokenizer.from_pretrained(decoders.tiny_decoder_folder(str(model_cache), CORPUS))
    assert raw.padding_side == "right" and not decoders.appends_end_token(raw)  # the harness does both
    assert_decoder_tokenizer(tiny_decoder.tokenizer)
    features = tiny_decoder.preprocess(TEXTS)  # what training and evaluation feed the model
    assert (features["input_ids"][:, -1] == tiny_decoder.tokenizer.eos_token_id).all()

    tiny_decoder.save(str(tmp_path / "saved"))
    assert_decoder_tokenizer(SentenceTransformer(str(tmp_path / "saved")).tokenizer)
    assert_decoder_tokenizer(AutoTokenizer.from_pretrained(tmp_path / "saved"))


BOS = [("<|pad|>", 1)]  # <|pad|> stands in for a BOS token


@pytest.mark.parametrize(
    ("post_processor", "single", "pair"),
    [
        (None, "A eos", "A eos B eos"),
        (processors.ByteLevel(trim_offsets=False), "A eos", "A eos B eos"),  # GPT-2, Qwen2
        (
            processors.TemplateProcessing(
                single="<|pad|> $A", pair="<|pad|> $A <|pad|> $B", special_tokens=BOS
            ),
            "bos A eos",
            "bos A eos bos B eos",
        ),
        (
            processors.Sequence(  # Llama 3: ByteLevel, then a template adding BOS
                [
                    processors.ByteLevel(trim_offsets=False),
                    processors.TemplateProcessing(
                        single="<|pad|> $A", pair="<|pad|> $A $B", special_tokens=BOS
                    ),
                ]
            ),
            "bos A eos",
            "bos A eos B eos",
        ),
    ],
    ids=["none", "byte_level", "bos_template", "sequence"],
)
def test_eos_is_appended_after_each_text_keeping_what_the_post_processor_adds(
    model_cache, post_processor, single, pair
):
    tokenizer = AutoTokenizer.from_pretrained(decoders.tiny_decoder_folder(str(model_cache), CORPUS))
    tokenizer.backend_tokenizer.post_processor = post_processor
    decoders.append_eos(tokenizer)
    ids = {
        "A": tokenizer.encode("a text", add_special_tokens=False),
        "B": tokenizer.encode("another", add_special_tokens=False),
        "bos": [1],
        "eos": [tokenizer.eos_token_id],
    }
    expected = {template: [i for part in template.split() for i in ids[part]] for template in (single, pair)}
    assert tokenizer("a text")["input_ids"] == expected[single]
    assert tokenizer("a text", "another")["input_ids"] == expected[pair]
    assert decoders.appends_end_token(tokenizer)


def test_a_tokenizer_that_appends_an_end_token_of_its_own_is_left_as_it_is(tiny_decoder):
    """As Qwen3-Embedding's, which appends <|endoftext|> (its pad token), not its EOS token <|im_end|>."""
    tokenizer = tiny_decoder.tokenizer
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <|pad|>", pair="$A <|pad|> $B <|pad|>", special_tokens=[("<|pad|>", 1)]
    )
    before = tokenizer(TEXTS[0])["input_ids"]
    assert before[-1] == tokenizer.pad_token_id != tokenizer.eos_token_id
    decoders.prepare_decoder(tiny_decoder)
    assert tokenizer(TEXTS[0])["input_ids"] == before and tokenizer.eos_token_id not in before


def test_weights_dtype_is_bfloat16_only_when_training_on_a_cuda_gpu(monkeypatch, model_cache):
    dtype = {"cuda": "bfloat16", "cpu": "float32"}
    assert decoders.weights_dtype(dtype, "auto") == (
        torch.bfloat16 if torch.cuda.is_available() else torch.float32
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert decoders.weights_dtype(dtype, "auto") == decoders.weights_dtype(dtype, "gpu") == torch.bfloat16
    assert decoders.weights_dtype(dtype, "cpu") == torch.float32
    with pytest.raises(ModelLoadError, match="model.dtype.cuda='bf16' is not a torch floating-point dtype"):
        decoders.weights_dtype({"cuda": "bf16"}, "auto")


def test_a_texts_last_token_embedding_does_not_depend_on_its_batch(tiny_decoder):
    together = tiny_decoder.encode(TEXTS, convert_to_tensor=True, batch_size=len(TEXTS))
    alone = torch.cat([tiny_decoder.encode([text], convert_to_tensor=True) for text in TEXTS])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_tiny_decoder_trains_with_lora_evaluates_every_dimension_saves_and_reloads(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(
        "model=tiny_decoder",
        "debug=fdr",
        "logger=none",
        "evaluation.show_progress_bar=false",
        "scheduler.warmup_ratio=0",  # one real optimizer step
        output_dir=run,
    )
    assert cfg.model.lora.target_modules[0] == "q_proj" and cfg.model.encoder.gradient_checkpointing
    metrics, objects = train(cfg)
    model = objects["model"]
    assert objects["trainer"].global_step == 1 and math.isfinite(metrics["val/score"])
    assert model.transformers_model.is_activation_checkpointing
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert any(p.abs().sum() > 0 for name, p in trainable.items() if "lora_B" in name)

    results = json.loads((run / "results.json").read_text())
    assert set(results["finetuned"]) == set(results["baseline"]) == {"32", "16", "8"}

    saved = SentenceTransformer(objects["model_path"])
    assert {"adapter_config.json", "tokenizer.json"} <= {path.name for path in (run / "model").iterdir()}
    assert_decoder_tokenizer(saved.tokenizer)
    torch.testing.assert_close(
        saved.encode(TEXTS, convert_to_tensor=True),
        model.eval().encode(TEXTS, convert_to_tensor=True),
        rtol=0,
        atol=1e-5,
    )


def test_qwen3_embedding_without_the_hub_fails_fast_with_a_model_load_error(make_cfg):
    try:
        snapshot_download(QWEN3, local_files_only=True)
        pytest.skip(f"{QWEN3} is in this machine's Hugging Face cache")
    except LocalEntryNotFoundError:
        pass
    cfg = make_cfg("model=qwen3_embedding_0_6b", "debug=fdr", "logger=none")
    assert cfg.model.encoder.name_or_path == QWEN3 and cfg.model.dimension == 1024
    assert cfg.model.lora.target_modules[-1] == "down_proj" and cfg.model.encoder.gradient_checkpointing
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=f"Cannot load model '{QWEN3}'.*not in the Hugging Face cache"):
        train(cfg)
    assert time.monotonic() - started < 30
