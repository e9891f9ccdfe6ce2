"""Making a Reflexio server store every organization in reflexio_store.

Reflexio's server asks its configurator class for each organization's storage; this module
registers a subclass of Reflexio's DefaultConfigurator (`set_configurator_class`) whose
`create_storage` returns a ReflexioStoreStorage whatever storage type the organization's
Reflexio config names. reflexio-ai 0.2.8's configurator module imports a client written in
Python 3.14-only syntax, so on older Pythons this raises a ConfigurationError saying so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reflexio_store.errors import ConfigurationError
from reflexio_store.integrations.reflexio.embedding import Embedder
from reflexio_store.settings import StorageConfig, StorageConfigSQLite

ConfigForOrg = Callable[[str], StorageConfig | None]


def _configurator_module() -> Any:
    try:
        return importlib.import_module("reflexio.server.services.configurator.configurator")
    except (ImportError, SyntaxError) as exc:
        raise ConfigurationError(
            "Reflexio's server configurator cannot be imported on this Python "
            f"({type(exc).__name__}: {exc}); reflexio-ai 0.2.8 needs Python 3.14 for its "
            "server. ReflexioStoreStorage itself works here: construct it directly."
        ) from None


def use_reflexio_store(
    config: StorageConfig | ConfigForOrg | None = None,
    *,
    embedder: Embedder | None = None,
    register: bool = True,
) -> type[Any]:
    """Register (and return) a configurator class that gives every organization a
    ReflexioStoreStorage.

    config: one StorageConfig for all organizations, or a function org_id -> StorageConfig
    (e.g. a PostgreSQL schema per organization). Default: the environment, except that a
    configurator given a base_dir keeps its database in that folder (as Reflexio does).
    embedder: texts -> vectors for every organization; default: Reflexio's own embedding
    client, built with each organization's API keys and LLM settings.
    """
    module = _configurator_module()
    from reflexio_store.integrations.reflexio.embedding import reflexio_embedder
    from reflexio_store.integrations.reflexio.storage import ReflexioStoreStorage

    def resolve_config(org_id: str, base_dir: str | None) -> StorageConfig | None:
        if callable(config):
            return config(org_id)
        if config is not None:
            return config
        if base_dir:
            path = Path(base_dir) / "reflexio_store.db"
            return StorageConfigSQLite(db_url=f"sqlite:///{path}")
        return None

    class ReflexioStoreConfigurator(module.DefaultConfigurator):  # type: ignore[name-defined]
        """Reflexio's default configurator, with every organization's data in reflexio_store."""

        def create_storage(self, storage_config: Any) -> Any:
            if embedder is not None:
                embed = embedder
            else:
                full = self.get_config()
                embed = reflexio_embedder(
                    full.api_key_config if full else None, full.llm_config if full else None
                )
            return ReflexioStoreStorage(
                self.org_id,
                config=resolve_config(self.org_id, self.base_dir),
                embedder=embed,
                base_dir=self.base_dir,
            )

        def is_storage_config_ready_to_test(self, storage_config: Any) -> bool:
            return True

    if register:
        module.set_configurator_class(ReflexioStoreConfigurator)
    return ReflexioStoreConfigurator
