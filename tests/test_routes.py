"""Each Store operation's route: `consistency` belongs to the read route, not to the functions."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from reflexio_store import SessionFactory
from reflexio_store.errors import ValidationError
from reflexio_store.store import Store, run_operation
from reflexio_store.store._operation import Operation


def _operations() -> dict[str, Operation[Any, Any]]:
    found: dict[str, Operation[Any, Any]] = {}
    for klass in reversed(Store.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Operation):
                found[name] = value
    return found


def test_operation_functions_do_not_declare_consistency() -> None:
    operations = _operations()
    reads = [name for name, op in operations.items() if op.route == "read"]
    assert len(reads) > 30  # the listing found the mixins' operations
    declaring = [
        name
        for name, op in operations.items()
        if "consistency" in inspect.signature(op.fn).parameters
    ]
    assert declaring == []


def test_the_read_route_consumes_consistency(sqlite_factory: SessionFactory) -> None:
    store = Store(sqlite_factory)
    (pid,) = store.add_profiles([{"user_id": "u", "content": "c"}])
    for consistency in ("eventual", "strong"):
        found = store.get_profile(pid, consistency=consistency)
        assert found is not None and found.profile_id == pid
    assert [p.profile_id for p in store.list_profiles(user_id="u", consistency="strong")] == [pid]
    with pytest.raises(ValidationError, match="consistency"):
        store.get_profile(pid, consistency="sometimes")  # type: ignore[call-overload]
    # A route that does not read from a replica has no `consistency` to give.
    with pytest.raises(TypeError):
        store.count_profiles(consistency="strong")  # type: ignore[call-arg]


def test_route_leaves_the_callers_arguments_as_they_were(sqlite_factory: SessionFactory) -> None:
    """A retry of the same call must read with the same consistency."""
    store = Store(sqlite_factory)
    (pid,) = store.add_profiles([{"user_id": "u", "content": "c"}])
    kwargs: dict[str, Any] = {"consistency": "strong"}
    op = _operations()["get_profile"]
    for _ in range(2):
        assert run_operation(sqlite_factory, op, (pid,), kwargs) is not None
    assert kwargs == {"consistency": "strong"}
