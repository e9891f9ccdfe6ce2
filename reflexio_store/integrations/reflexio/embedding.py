"""Turning texts into vectors for the adapter.

reflexio_store never calls a model: the caller's `embedder` does. Without one, the adapter uses
Reflexio's own embedding client (LiteLLM with Reflexio's embedding model and prefix), where that
client imports; reflexio-ai 0.2.8's client uses Python 3.14-only syntax, so on older Pythons the
caller has to pass an embedder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from reflexio_store.errors import ConfigurationError, ValidationError

Embedder = Callable[[list[str]], Sequence[Sequence[float]]]
"""Takes a list of texts, returns one vector per text (same order)."""

BatchEmbedder = Callable[[list[str]], Sequence[Sequence[float]]]

_DOCUMENT_PREFIX = "search_document: "


def batch_embedder(embedder: Embedder) -> BatchEmbedder:
    """Wrap a caller's embedder: one call per batch, the result checked for count and shape."""

    def embed(texts: list[str]) -> Sequence[Sequence[float]]:
        if not texts:
            return []
        result = embedder(list(texts))
        vectors = list(result) if isinstance(result, Iterable) else None
        if (
            vectors is None
            or len(vectors) != len(texts)
            or any(isinstance(v, (int, float)) for v in vectors)
        ):
            got = f"a {type(result).__name__}" if vectors is None else f"{len(vectors)} items"
            raise ValidationError(
                f"The embedder returned {got} for {len(texts)} texts; it must take a list of "
                "texts and return one vector (a list of numbers) per text, in order."
            )
        return vectors  # validated (size, finite, not all zero) where they are stored

    return embed


def reflexio_embedder(api_key_config: Any = None, llm_config: Any = None) -> BatchEmbedder:
    """Reflexio's own embedding path (as its SQLiteStorage embeds documents), or a
    ConfigurationError saying what to pass when that path cannot be imported here."""
    try:
        litellm = importlib.import_module("reflexio.server.llm.litellm_client")
        defaults = importlib.import_module("reflexio.server.llm.model_defaults")
        site_vars = importlib.import_module("reflexio.server.site_var.site_var_manager")
        config_schema = importlib.import_module("reflexio.models.config_schema")
    except (ImportError, SyntaxError) as exc:
        raise ConfigurationError(
            "No embedder given, and Reflexio's own embedding client cannot be imported here "
            f"({type(exc).__name__}: {exc}). Pass embedder=<callable taking a list of texts and "
            "returning one vector per text>, e.g. ReflexioStoreStorage(org_id, embedder=embed)."
        ) from None
    setting = site_vars.SiteVarManager().get_site_var("llm_model_setting")
    site_var = setting if isinstance(setting, dict) else {}
    model_name = defaults.resolve_model_name(
        defaults.ModelRole.EMBEDDING,
        site_var_value=site_var.get("embedding_model_name"),
        config_override=llm_config.embedding_model_name if llm_config else None,
        api_key_config=api_key_config,
    )
    client = litellm.LiteLLMClient(
        litellm.LiteLLMConfig(model=model_name, temperature=0.0, api_key_config=api_key_config)
    )
    dimensions = config_schema.EMBEDDING_DIMENSIONS

    def embed(texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        prefixed = [_DOCUMENT_PREFIX + text for text in texts]
        return [list(v) for v in client.get_embeddings(prefixed, model_name, dimensions)]

    return embed
