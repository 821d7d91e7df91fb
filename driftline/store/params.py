"""SQL query parameters with generated placeholder names.

Every value a driftline query takes from outside goes through :class:`SqlParams`: the
SQL holds only a ``{pN:Type}`` placeholder, ClickHouse binds the value on the server
side, and strings travel hex-encoded (``unhex``) so that no byte of them can end a
literal. Nothing is ever formatted into SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SqlParams", "hex_text"]


def hex_text(value: str) -> str:
    """A SQL expression for ``value`` that needs no escaping and no query parameter (for
    paths that take none, such as a running worker's read page): its UTF-8, hex-encoded.

    Examples
    --------
    >>> hex_text("it's")
    "unhex('69742773')"
    """
    return f"unhex('{value.encode().hex()}')"


class SqlParams:
    """Query parameters with generated placeholder names; each method returns the SQL
    that reads its value, and :attr:`values` is what the query is run with.

    Examples
    --------
    >>> p = SqlParams()
    >>> f"model_id = {p.string('credit')} AND n > {p.integer(5)}"
    'model_id = unhex({p0:String}) AND n > {p1:Int64}'
    >>> p.values
    {'p0': '637265646974', 'p1': 5}
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def _name(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return name

    def string(self, value: str) -> str:
        return f"unhex({{{self._name(value.encode('utf-8').hex())}:String}})"

    def strings(self, values: Sequence[str]) -> str:
        if not values:
            raise ValueError("an empty list would read as one empty string")
        packed = ",".join(value.encode("utf-8").hex() for value in values)
        return f"arrayMap(h -> unhex(h), splitByChar(',', {{{self._name(packed)}:String}}))"

    def number(self, value: float) -> str:
        return f"{{{self._name(float(value))}:Float64}}"

    def numbers(self, values: Sequence[float]) -> str:
        return f"{{{self._name([float(v) for v in values])}:Array(Float64)}}"

    def integer(self, value: int) -> str:
        return f"{{{self._name(int(value))}:Int64}}"

    def integers(self, values: Sequence[int]) -> str:
        return f"{{{self._name([int(v) for v in values])}:Array(Int64)}}"
