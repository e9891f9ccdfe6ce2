"""reflexio_store as a Reflexio storage backend (`pip install 'reflexio_store[reflexio]'`).

    from reflexio_store.integrations.reflexio import ReflexioStoreStorage, use_reflexio_store

ReflexioStoreStorage implements reflexio-ai's BaseStorage on Store; use_reflexio_store() makes a
Reflexio server create it for every organization.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

from reflexio_store.errors import ConfigurationError

SUPPORTED_REFLEXIO = "0.2.8"

if importlib.util.find_spec("reflexio") is None:  # pragma: no cover - depends on the install
    raise ConfigurationError(
        "reflexio_store.integrations.reflexio needs the reflexio-ai package: "
        "pip install 'reflexio_store[reflexio]'."
    )


def _import_reflexio_server() -> None:
    """Import reflexio-ai's server package (it holds BaseStorage) without letting it rewire
    this process's logging: on import it sets the root logger to DEBUG and adds console and
    file handlers (under ~/.reflexio/logs). A Reflexio server has imported it already, with
    its own logging, and keeps it; anywhere else the root logger is left as it was."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        importlib.import_module("reflexio.server")
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


_import_reflexio_server()

from reflexio_store.integrations.reflexio._core import ReflexioNotFoundError  # noqa: E402
from reflexio_store.integrations.reflexio.embedding import (  # noqa: E402
    Embedder,
    reflexio_embedder,
)
from reflexio_store.integrations.reflexio.server import use_reflexio_store  # noqa: E402
from reflexio_store.integrations.reflexio.storage import ReflexioStoreStorage  # noqa: E402

__all__ = [
    "SUPPORTED_REFLEXIO",
    "Embedder",
    "ReflexioNotFoundError",
    "ReflexioStoreStorage",
    "reflexio_embedder",
    "use_reflexio_store",
]
