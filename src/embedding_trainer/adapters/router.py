"""A frozen SentenceTransformer with an adapter on its query route only."""

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Module, Normalize, Router

from embedding_trainer.prompts import DOCUMENT, QUERY


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
    """The adapter of a model built by `with_query_adapter` (its query route's first module that is
    not on the document route); None for a model without one."""
    router = model[0] if len(model) and isinstance(model[0], Router) else None
    if router is None or QUERY not in router.sub_modules or DOCUMENT not in router.sub_modules:
        return None
    shared = {id(module) for module in router.sub_modules[DOCUMENT]}
    extra = [module for module in router.sub_modules[QUERY] if id(module) not in shared]
    return extra[0] if extra else None
