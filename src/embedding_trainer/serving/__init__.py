"""An OpenAI-compatible embeddings server over a sentence-transformers model (`python serve.py`):
`requests` checks a request and shapes the OpenAI-style errors, `batching` encodes concurrent requests
together, `app` holds the routes, `server` loads the model and runs uvicorn."""
