"""Serve an embedding model over an OpenAI-compatible API: `python serve.py [model=<option, folder or hub id>] [serve.port=...]` (docs/serving.md)."""

from embedding_trainer.cli import serve_main

if __name__ == "__main__":
    serve_main()
