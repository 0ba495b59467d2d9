"""Query and document prompts: which texts get which of a model's prompts.

A SentenceTransformer keeps named prompts (`model.prompts`, saved with it): `encode_query` prepends
the one named `query`, `encode_document` the one named `document` ("" or missing: no prompt). The
harness prepends them the same way in training (per input column, tokenized with the text) and in
every evaluator:

- retrieval data (pair, triplet, n_tuple): the anchor is a query (query prompt); positive and
  negative columns are documents (document prompt). Retrieval evaluation encodes its queries with
  the query prompt and its corpus with the document prompt; triplet evaluation likewise.
- symmetric data (score, pair_class, pair_binary, single, single_class, anchor_anchor, denoising,
  and the pairs that single-sentence losses build per batch): both sides are the same kind of
  text, so every text gets the query prompt (as E5 and Qwen3-Embedding instruct both sides of STS
  and classification inputs), and the two sides of a pair stay encoded alike. Their evaluators
  (similarity, binary and softmax classification, k-NN, the STS benchmark, the embedding-health
  probe) use the query prompt too.
- TSDAE's reconstruction target (`original_sentence`) is decoded, never embedded: no prompt.
"""

from collections.abc import Iterable, Mapping

QUERY = "query"
DOCUMENT = "document"
DOCUMENT_COLUMNS = ("positive", "negative")  # with n-tuples' negative_1..negative_n
UNEMBEDDED_COLUMNS = ("original_sentence",)


def column_role(column: str) -> str | None:
    """The prompt name the texts of training column `column` get: `document` for positive and
    negative columns, None for a column that is not embedded, `query` for every other column."""
    if column in UNEMBEDDED_COLUMNS:
        return None
    if column.split("_")[0] in DOCUMENT_COLUMNS:
        return DOCUMENT
    return QUERY


def prompt_text(prompts: Mapping[str, str | None], role: str | None) -> str | None:
    """The text of prompt `role` in a model's `prompts` (None: no prompt, for a missing, empty or
    None entry, or no role)."""
    return (prompts.get(role) or None) if role else None


def column_prompts(prompts: Mapping[str, str | None], columns: Iterable[str]) -> dict[str, str | None]:
    """{column: the prompt its texts get} for training columns, from a model's `prompts`."""
    return {column: prompt_text(prompts, column_role(column)) for column in columns}
