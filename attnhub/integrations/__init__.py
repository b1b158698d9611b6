"""Adapters that plug :func:`attnhub.attention` into the places people already call attention.

* :mod:`attnhub.integrations.transformers` — ``register()`` makes
  ``attn_implementation="attnhub"`` available to Hugging Face transformers models.

Each adapter imports its framework lazily: importing this package imports nothing heavy.
"""
