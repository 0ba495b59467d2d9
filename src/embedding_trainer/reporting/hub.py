"""Uploading a saved model to the Hugging Face Hub."""

import os
from pathlib import Path

from sentence_transformers import SentenceTransformer

from embedding_trainer.utils.errors import ModelPushError


def push_to_hub(model: SentenceTransformer, model_dir: Path, repo_id: str, private: bool = True) -> str:
    """Upload `model` (already saved in `model_dir`, model card included) to hub repository
    `repo_id` with the token in HF_TOKEN; return the repository URL. Raises ModelPushError with
    what to do when the upload fails; the local folder is never changed."""
    if not repo_id:
        raise ModelPushError("hub.push=true needs hub.repo_id (for example your-name/my-embedder).")
    try:
        return model.push_to_hub(
            repo_id, token=os.environ.get("HF_TOKEN"), private=private, local_model_path=str(model_dir)
        )
    except Exception as error:  # the hub client raises many transport, auth and HTTP error types
        raise ModelPushError(
            f"Could not push the model to the Hugging Face Hub repository {repo_id!r} "
            f"({type(error).__name__}: {str(error)[:300]}). The model is saved, unchanged, at {model_dir}; "
            "check the network and HF_TOKEN (a token with write access), then push that folder again."
        ) from None
