"""Store and AsyncStore methods show their parameters (help(), IDEs, inspect.signature) and can
be called through the class, as any method."""

from __future__ import annotations

import asyncio
import inspect

from reflexio_store import SessionFactory
from reflexio_store.store import AsyncStore, Store
from reflexio_store.store._operation import Operation


def _operations() -> list[tuple[str, Operation[..., object]]]:
    found = []
    for name in dir(Store):
        attribute = inspect.getattr_static(Store, name)
        if isinstance(attribute, Operation):
            found.append((name, attribute))
    return found


def test_every_method_has_the_functions_parameters(sqlite_factory: SessionFactory) -> None:
    """inspect.signature(Store.search_profiles) raised TypeError, and on an instance every
    method showed (*args, **kwargs)."""
    store, astore = Store(sqlite_factory), AsyncStore(sqlite_factory)
    operations = _operations()
    assert len(operations) > 50
    for name, op in operations:
        own = list(inspect.signature(op.fn).parameters)[1:]  # without the session
        expected = [*own, "consistency"] if op.route == "read" else own
        for method in (getattr(store, name), getattr(astore, name)):
            assert sorted(inspect.signature(method).parameters) == sorted(expected), name
        assert next(iter(inspect.signature(getattr(Store, name)).parameters)) == "self"


def test_a_method_called_through_its_class(sqlite_factory: SessionFactory) -> None:
    store = Store(sqlite_factory)
    Store.save_state(store, "r1", {"status": "running"})
    assert Store.load_state(store, "r1")["status"] == "running"
    loaded = asyncio.run(AsyncStore.load_state(AsyncStore(sqlite_factory), "r1"))
    assert loaded["status"] == "running"
    assert Store.list_runs(store, consistency="strong")[0]["run_id"] == "r1"
