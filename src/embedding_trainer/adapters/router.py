"""A frozen SentenceTransformer with an adapter on its query route only."""

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Module, Normalize, Router

from embedding_trainer.models.prompts import DOCUMENT, QUERY

# The route of a model from `with_query_adapter` that is the frozen model alone.
FROZEN_ROUTE = DOCUMENT


def with_query_adapter(model: SentenceTransformer, adapter: Module) -> SentenceTransformer:
    """A SentenceTransformer whose `document` route is `model`'s own modules (the same objects, so
    `encode_document` returns exactly `model`'s embeddings and an index built with `model` stays valid)
    and whose `query` route is those modules, then `adapter` (then a Normalize when `model` ends with
    one, so query embeddings stay unit length). `model`'s weights are frozen; only `adapter` trains.
    `encode` without a task takes the document route. Prompts, maximum length and the tokenizer are
    `model`'s."""
    modules = list(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    query_route = [*modules, adapter]
    if isinstance(modules[-1], Normalize):
        query_route.append(Normalize())
    router = Router.for_query_document(
        query_modules=query_route, document_modules=modules, default_route=DOCUMENT
    )
    routed = SentenceTransformer(modules=[router], prompts=dict(model.prompts), device=str(model.device))
    routed.default_prompt_name = model.default_prompt_name
    return routed


def query_adapter(model: SentenceTransformer) -> Module | None:
    """The adapter of a model built by `with_query_adapter`; None for a model without one."""
    after_frozen = modules_after_frozen(model, QUERY)
    return after_frozen[0] if after_frozen else None


def modules_after_frozen(model: SentenceTransformer, task: str) -> list[Module] | None:
    """For a model built by `with_query_adapter`: the modules a text of `task` goes through after the
    frozen model (its `FROZEN_ROUTE`): for queries the adapter (and a Normalize when the model
    normalizes), for documents none. None for a model of another build, whose routes are not the
    frozen modules followed by modules of their own (which `apply_modules` runs on stored embeddings)."""
    router = model[0] if len(model) == 1 and isinstance(model[0], Router) else None
    if router is None or set(router.sub_modules) != {QUERY, DOCUMENT}:
        return None
    frozen, query = list(router.sub_modules[FROZEN_ROUTE]), list(router.sub_modules[QUERY])
    if len(query) <= len(frozen) or any(a is not b for a, b in zip(query, frozen)):
        return None
    return query[len(frozen) :] if task == QUERY else []


def apply_modules(modules: list[Module], embeddings: torch.Tensor) -> torch.Tensor:
    """`embeddings` (the frozen model's, on the CPU) passed through `modules` as the model's forward
    would pass them, on the modules' device; float32 on the CPU, like the embeddings given."""
    device = next((p.device for module in modules for p in module.parameters()), embeddings.device)
    features = {"sentence_embedding": embeddings.to(device)}
    with torch.no_grad():
        for module in modules:
            features = module(features)
    return features["sentence_embedding"].float().cpu()
