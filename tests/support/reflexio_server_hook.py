"""Reflexio's server with this backend plugged in, run where Reflexio's server imports (a
patched copy on Python 3.11, see reflexio_reference.py):
    python -m tests.support.reflexio_server_hook FOLDER
Prints one JSON object with what it observed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reflexio.models.api_schema.domain import UserProfile
from reflexio.models.api_schema.retriever_schema import SearchUserProfileRequest
from reflexio.models.config_schema import SearchMode
from reflexio.server.api_endpoints.request_context import RequestContext
from reflexio.server.services.configurator.configurator import get_configurator_class

from reflexio_store import StorageConfigSQLite
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.integrations.reflexio import ReflexioStoreStorage, use_reflexio_store

HASHER = HashingEmbedder()


def embed(texts: list[str]) -> list[list[float]]:
    return [[float(x) for x in v] for v in HASHER.embed_many(texts)]


def main() -> None:
    folder = Path(sys.argv[1])
    configurator = use_reflexio_store(
        lambda org_id: StorageConfigSQLite(db_url=f"sqlite:///{folder / org_id}.db"),
        embedder=embed,
    )
    out: dict[str, object] = {"registered": get_configurator_class() is configurator}
    a = RequestContext("org-a", storage_base_dir=str(folder / "a"))
    b = RequestContext("org-b", storage_base_dir=str(folder / "b"))
    out["storage_types"] = [type(a.storage).__name__, type(b.storage).__name__]
    out["is_ours"] = isinstance(a.storage, ReflexioStoreStorage)
    out["configured"] = a.is_storage_configured()
    ok, message = a.configurator.test_and_init_storage_config(
        a.configurator.get_current_storage_configuration()
    )
    out["test_and_init"] = [ok, message]
    a.storage.add_user_profile(
        "u1",
        [
            UserProfile(
                profile_id="p1",
                user_id="u1",
                content="prefers dark mode",
                last_modified_timestamp=1_700_000_000,
                generated_from_request_id="r1",
            )
        ],
    )
    request = SearchUserProfileRequest(user_id="u1", query="dark", search_mode=SearchMode.FTS)
    out["org_a_hits"] = [p.profile_id for p in a.storage.search_user_profile(request)]
    out["org_b_hits"] = [p.profile_id for p in b.storage.search_user_profile(request)]
    out["files"] = sorted(p.name for p in folder.glob("*.db"))
    print("HOOK-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
