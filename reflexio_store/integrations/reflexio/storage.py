"""ReflexioStoreStorage: Reflexio's storage contract (BaseStorage, 82 methods) on Store."""

from __future__ import annotations

from reflexio_store.integrations.reflexio._extras import ExtrasPart
from reflexio_store.integrations.reflexio._operations import OperationPart
from reflexio_store.integrations.reflexio._playbooks import PlaybookPart
from reflexio_store.integrations.reflexio._profiles import ProfilePart
from reflexio_store.integrations.reflexio._requests import RequestPart
from reflexio_store.integrations.reflexio.arguments import check_arguments


@check_arguments
class ReflexioStoreStorage(ProfilePart, RequestPart, PlaybookPart, OperationPart, ExtrasPart):
    """A Reflexio storage backed by reflexio_store (SQLite, or PostgreSQL with a replica).

    ReflexioStoreStorage(org_id, config=StorageConfigPostgres(...), embedder=embed)

    config: a reflexio_store StorageConfig* (default: the environment). embedder: a callable
    taking a list of texts and returning one vector per text; without it Reflexio's own
    embedding client is used where it imports, else a ConfigurationError says what to pass.
    Searches run on the reader (the replica when configured); writes, and every read that
    generation depends on, run on the primary.
    """
