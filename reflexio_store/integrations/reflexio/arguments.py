"""Every public method of ReflexioStoreStorage checks its arguments against its own signature.

Reflexio calls the backend through BaseStorage's 82 methods, whose parameters carry type hints
(`user_id: str`, `limit: int`, `user_ids: list[str] | None`, `request: SearchUserProfileRequest`).
`check_arguments` wraps each method so that a value of the wrong kind gets a ValidationError naming
the parameter, before anything reaches a database, instead of a raw TypeError, OverflowError or
driver error, or (worse) a str read as a list of one-character ids:

- text: no NUL, valid UTF-8; names and ids (every text parameter but `content`) at most
  MAX_KEY_BYTES, as the indexed columns take on both databases;
- integers: not bool; ids in the 64-bit key range; counts and limits within INT32; `days_back`
  within a century;
- lists: a list (a str or mapping is refused), each element checked as above; lists of models
  hold only that model;
- models and enums: an instance of the annotated class (an enum also by its value);
- None: passed on where the annotation allows it, refused where it does not.

Parameters whose hint is something else (a dict, a callable) are left to the method.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from reflexio_store.errors import ValidationError
from reflexio_store.validation import (
    MAX_KEY_BYTES,
    as_list,
    require_int,
    require_int_id,
    require_text,
    shown_value,
)

Check = Callable[[Any], Any]

INT32 = 2**31 - 1
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "days_back": (0, 36_500),
    "offset": (0, 2**62),
    "stale_lock_seconds": (-(10**9), 10**9),  # below 0: any lock counts as stale
    # Epoch seconds of years 1-9999 (what a datetime holds).
    "start_time": (-62_135_596_800, 253_402_300_799),
    "end_time": (-62_135_596_800, 253_402_300_799),
}
"""Bounds of integer parameters by name; other counts and limits take 0..INT32."""
_ID_PARAMETERS = {"agent_playbook_id", "user_playbook_id", "min_user_playbook_id"}
_FREE_TEXT = {"content"}
"""Text parameters that are not names or ids (no MAX_KEY_BYTES bound)."""


def _text(name: str) -> Check:
    limit = None if name in _FREE_TEXT else MAX_KEY_BYTES

    def check(value: Any) -> Any:
        if limit is None:
            return require_text(value, name, allow_empty=True)
        return require_text(value, name, allow_empty=True, max_bytes=limit)

    return check


def _integer(name: str) -> Check:
    if name in _ID_PARAMETERS:
        return lambda value: require_int_id(value, name)
    low, high = _INT_BOUNDS.get(name, (0, INT32))
    return lambda value: require_int(value, name, low, high)


def _boolean(name: str) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValidationError(f"{name} must be True or False, got {type(value).__name__}.")
        return value

    return check


def _instance(name: str, cls: type) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, cls):
            raise ValidationError(f"{name} must be a {cls.__name__}, got {type(value).__name__}.")
        return value

    return check


def _member(name: str, cls: type[enum.Enum]) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ValidationError(
                f"{name} must be one of {allowed}, got {shown_value(value)}."
            ) from None

    return check


def _listed(name: str, element: Check) -> Check:
    def check(value: Any) -> Any:
        return [element(item) for item in as_list(value, name)]

    return check


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _checker(name: str, hint: Any) -> Check | None:
    """The check a parameter's type hint asks for, or None to leave the value to the method."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _checker(name, members[0]) if len(members) == 1 else None
        if inner is None:
            return None
        if len(members) < len(typing.get_args(hint)):
            return _optional(inner)
        return inner
    if origin is list:
        (element_hint,) = typing.get_args(hint) or (Any,)
        element = _checker(name, element_hint)
        return None if element is None else _listed(name, element)
    if hint is str:
        return _text(name)
    if hint is bool:
        return _boolean(name)
    if hint is int:
        return _integer(name)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _member(name, hint)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return _instance(name, hint)
    if hint is dict or origin is dict or origin is Mapping:
        return _instance(name, dict)
    return None


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    checks = {
        name: check
        for name in list(signature.parameters)[1:]
        if (check := _checker(name, hints.get(name, Any))) is not None
    }
    if not checks:
        return method

    @functools.wraps(method)
    def checked(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ValidationError(f"{method.__name__}: {exc}.") from None
        for name, check in checks.items():
            if name in bound.arguments:
                value = bound.arguments[name]
                if value is None and signature.parameters[name].default is None:
                    continue  # an optional parameter left at its default meaning
                bound.arguments[name] = check(value)
        return method(*bound.args, **bound.kwargs)

    checked.__reflexio_checked__ = True  # type: ignore[attr-defined]
    return checked


def check_arguments(cls: type) -> type:
    """Wrap every public method of `cls` (its own and inherited) in its argument checks."""
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            setattr(cls, name, _guarded(method))
    return cls
