"""Shared utilities: errors, logging, fingerprints, the embedding cache, atomic folders, encoding helpers."""
