"""JSON text for PostgreSQL's jsonb that reads back as it was written.

jsonb keeps numbers as `numeric` and renders them without an exponent. A float of magnitude 1e16
or more is always a whole number, and `json.dumps` writes it with an exponent
(`6.612535458209402e+16`); jsonb would give it back as the integer `66125354582094020`, which
Python reads as an int of another value. Written as its exact digits with a fraction
(`66125354582094016.0`), jsonb keeps the scale and gives back text that parses to the same float.
SQLite stores JSON text as written, so it needs none of this.

Such floats are rare: the text is produced by the standard library's C encoder, and only when it
holds an exponent with a plus sign (`e+`) is the value encoded again by `_exact`, which writes
floats of that size exactly.
"""

from __future__ import annotations

import json
from typing import Any

_EXACT_FROM = 1e16
"""From here on `float.__repr__` uses an exponent for a whole number (and every float is one)."""


def postgres_json_dumps(value: Any) -> str:
    text = json.dumps(value)
    if "e+" not in text:
        return text
    return _exact(value)


def _exact(value: Any) -> str:
    if isinstance(value, float) and abs(value) >= _EXACT_FROM and value == value:
        if value in (float("inf"), float("-inf")):
            return json.dumps(value)  # refused by validation before it gets here
        return f"{int(value)}.0"
    if isinstance(value, dict):
        items = (f"{json.dumps(_key(k))}: {_exact(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_exact(v) for v in value) + "]"
    return json.dumps(value)


def _key(key: Any) -> str:
    # As json.dumps names a non-text key: true, null, 1.5.
    return key if isinstance(key, str) else json.dumps(key)
