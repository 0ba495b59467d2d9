"""Decoder (LLM) embedders: a causal language model whose last token embeds the text.

Such a model only sees the whole text at its last position, so the tokenizer must end every text
with an end token and pad on the left (the last position is then always a real token). Both are
set on the tokenizer itself (`prepare_decoder`), so they are saved with the model and plain
`SentenceTransformer(path)` embeds as the harness does. The weights' dtype is chosen when the model
is built (`weights_dtype`: bfloat16 on a CUDA GPU, float32 on CPU)."""

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from embedding_trainer.models.loading import from_transformer, load_pretrained, write_random_model
from embedding_trainer.utils.errors import ModelLoadError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

PROBE_TEXT = "a probe text"
TINY_EOS, TINY_PAD = "<|endoftext|>", "<|pad|>"


def weights_dtype(dtype: Mapping[str, str], accelerator: str = "auto") -> torch.dtype:
    """The dtype to load weights in: `dtype["cuda"]` when the run trains on a CUDA GPU
    (`accelerator` is not "cpu" and CUDA is available), else `dtype["cpu"]`.

    Raises:
        ModelLoadError: a missing key, or a name that is not a torch floating-point dtype.
    """
    where = "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    name = dtype.get(where)
    chosen = getattr(torch, str(name), None)
    if not isinstance(chosen, torch.dtype) or not chosen.is_floating_point:
        raise ModelLoadError(
            f"model.dtype.{where}={name!r} is not a torch floating-point dtype: use bfloat16, float16 or "
            "float32 (model.dtype has one entry for CUDA GPUs and one for CPU)."
        )
    return chosen


def appends_end_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether `tokenizer` ends a text with a token of its own: its EOS token, or any special token
    it appends (Qwen3-Embedding appends <|endoftext|>, which is not its EOS token)."""
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    plain = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    return ids[-1] == tokenizer.eos_token_id or ids[len(ids) - len(plain) :] != plain


def append_eos(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the fast `tokenizer` append its EOS token to every text (and to both texts of a pair), in
    place, through its post-processor, which is saved in tokenizer.json; truncation keeps room for it.
    Tokens the post-processor already adds (such as a BOS token) stay.

    Raises:
        ModelLoadError: the tokenizer has no EOS token or is not a fast tokenizer.
    """
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or not tokenizer.is_fast:
        raise ModelLoadError(
            f"Cannot make the tokenizer of this decoder model append an end-of-sequence token (EOS token "
            f"{eos!r}, fast tokenizer: {tokenizer.is_fast}): last-token pooling needs one. Use a model whose "
            "fast tokenizer (tokenizer.json) names an eos_token."
        )
    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    state["post_processor"] = _with_eos(state["post_processor"], eos, eos_id)
    backend.post_processor = Tokenizer.from_str(json.dumps(state)).post_processor


def _with_eos(processor: dict | None, eos: str, eos_id: int) -> dict:
    """The JSON form of post-processor `processor` (None: none) with `eos` after every text."""
    if processor is None:
        return _with_eos(_template([{"Sequence": {"id": "A", "type_id": 0}}]), eos, eos_id)
    if processor["type"] == "TemplateProcessing":
        return {
            **processor,
            "single": _eos_after_texts(processor["single"], eos),
            "pair": _eos_after_texts(processor["pair"], eos),
            "special_tokens": {
                **processor["special_tokens"],
                eos: {"id": eos, "ids": [eos_id], "tokens": [eos]},
            },
        }
    inner = processor.get("processors", [])
    if processor["type"] == "Sequence" and any(p["type"] == "TemplateProcessing" for p in inner):
        templates = [_with_eos(p, eos, eos_id) if p["type"] == "TemplateProcessing" else p for p in inner]
        return {**processor, "processors": templates}
    return {"type": "Sequence", "processors": [processor, _with_eos(None, eos, eos_id)]}  # e.g. ByteLevel


def _template(single: list[dict]) -> dict:
    """A TemplateProcessing (JSON form) of `single`, whose pair template is $A then $B."""
    return {
        "type": "TemplateProcessing",
        "single": single,
        "pair": [*single, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {},
    }


def _eos_after_texts(pieces: list[dict], eos: str) -> list[dict]:
    """Template `pieces` with a special token `eos` after each text ($A, $B) piece."""
    out = []
    for piece in pieces:
        out.append(piece)
        if "Sequence" in piece:
            out.append({"SpecialToken": {"id": eos, "type_id": piece["Sequence"]["type_id"]}})
    return out


def prepare_decoder(model: SentenceTransformer) -> SentenceTransformer:
    """Set up `model`'s tokenizer for a decoder embedder, in place: left padding, and an EOS token
    appended to every text unless the tokenizer already ends texts with a token of its own
    (`appends_end_token`). Both are saved with the model.

    Raises:
        ModelLoadError: no end token can be appended (see `append_eos`).
    """
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    if not appends_end_token(tokenizer):
        append_eos(tokenizer)
        log.info(f"The tokenizer now appends its EOS token {tokenizer.eos_token!r} to every text")
    return model


def from_decoder(
    name_or_path: str,
    dtype: Mapping[str, str],
    accelerator: str = "auto",
    normalize: bool = True,
    prompts: Mapping[str, str | None] | None = None,
    max_seq_length: int | None = None,
    gradient_checkpointing: bool = True,
) -> SentenceTransformer:
    """A decoder embedder built from a plain Hugging Face causal model (folder or hub id, as
    `models.from_transformer` loads it): Transformer -> last-token Pooling -> Normalize (when
    `normalize`), in the dtype `weights_dtype(dtype, accelerator)` picks, prepared by `prepare_decoder`.

    Raises:
        ModelLoadError: the model does not load, or no end token can be appended.
    """
    model = from_transformer(
        name_or_path,
        "lasttoken",
        normalize,
        prompts,
        max_seq_length,
        {"dtype": weights_dtype(dtype, accelerator)},
        gradient_checkpointing,
    )
    return prepare_decoder(model)


def load_decoder(
    name_or_path: str,
    dtype: Mapping[str, str],
    accelerator: str = "auto",
    max_seq_length: int | None = None,
    prompts: Mapping[str, str | None] | None = None,
    gradient_checkpointing: bool = True,
) -> SentenceTransformer:
    """A saved sentence-transformers decoder embedder (folder or hub id, such as
    Qwen/Qwen3-Embedding-0.6B) with its own pooling and prompts, loaded by `models.load_pretrained`
    in the dtype `weights_dtype(dtype, accelerator)` picks, prepared by `prepare_decoder`.

    Raises:
        ModelLoadError: the model does not load (an unreachable hub fails fast), or no end token
            can be appended.
    """
    model = load_pretrained(
        name_or_path,
        max_seq_length,
        gradient_checkpointing,
        prompts,
        {"dtype": weights_dtype(dtype, accelerator)},
    )
    return prepare_decoder(model)


def build_tiny_decoder(
    cache_dir: str,
    corpus: str,
    dtype: Mapping[str, str],
    accelerator: str = "auto",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1024,
    max_seq_length: int = 64,
    seed: int = 0,
    normalize: bool = True,
    prompts: Mapping[str, str | None] | None = None,
    gradient_checkpointing: bool = True,
) -> SentenceTransformer:
    """A randomly initialised Qwen3 decoder embedder built offline (`tiny_decoder_folder`), made a
    last-token embedder by `from_decoder`. Every call with the same arguments gives the same model."""
    folder = tiny_decoder_folder(cache_dir, corpus, hidden_size, num_layers, num_heads, vocab_size, seed)
    return from_decoder(
        str(folder), dtype, accelerator, normalize, prompts, max_seq_length, gradient_checkpointing
    )


def tiny_decoder_folder(
    cache_dir: str,
    corpus: str,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """The folder of a randomly initialised plain Hugging Face Qwen3 model (grouped-query attention:
    one key/value head) with a byte-level BPE tokenizer trained on the `sentence` texts of the JSON
    lines file `corpus` (EOS and pad tokens, no end token appended, right padding: `prepare_decoder`
    sets those), written once to `cache_dir` (keyed by its shape, corpus and seed) and reused after that."""
    name = f"tiny-qwen3-h{hidden_size}-l{num_layers}-a{num_heads}-v{vocab_size}-{Path(corpus).stem}-s{seed}"
    folder = Path(cache_dir) / name
    if not (folder / "config.json").exists():
        tokenizer = train_tiny_tokenizer(corpus, vocab_size)
        config = Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=1,
            head_dim=hidden_size // num_heads,
            intermediate_size=hidden_size * 2,
            max_position_embeddings=512,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        write_random_model(folder, lambda: Qwen3Model(config), tokenizer, seed)
    return folder


def train_tiny_tokenizer(corpus: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of `vocab_size` tokens trained (deterministically) on the
    `sentence` field of each line of the JSON lines file `corpus`, with EOS and pad tokens, no
    post-processor and right padding."""
    with open(corpus, encoding="utf-8") as lines:
        texts = [json.loads(line)["sentence"] for line in lines if line.strip()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[TINY_EOS, TINY_PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=TINY_EOS, pad_token=TINY_PAD)
