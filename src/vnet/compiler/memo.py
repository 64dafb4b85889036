"""Memoised builders that remember what they read.

A builder is given its model objects wrapped in `_Tracked`, which records
each attribute the builder reads and the value it saw.  The next compile
reuses the builder's flows only if the same number of objects is given and
every recorded attribute still has its value (an object that is the very
same instance is unchanged: model objects are never mutated in place, a
change makes a new one).  There is no signature to write by hand, so none
can forget a field: a builder that starts reading another field is
recompiled when that field changes, with no other edit.  Values the builder
is given that are not model objects (an OpenFlow port number, the tunnel
ports) go in `args`, compared whole.

The cost of a hit is one attribute read and comparison per recorded read,
about what building a hand-written signature cost; a miss costs the build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Entry", "Memo", "recall"]

T = TypeVar("T")


class _Tracked:
    """A read-only view of one object that records what is read of it.

    The first read of an attribute lands in the view's own `__dict__`, so the
    record is that dict and a second read costs no call.
    """

    __slots__ = ("__dict__", "_obj")

    def __init__(self, obj: object) -> None:
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._obj, name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{name}: a builder only reads the model")


@dataclass
class Entry:
    objs: tuple[object, ...]
    reads: tuple[dict[str, object], ...]
    args: tuple[object, ...]
    value: Any


Memo = dict[tuple[str, ...], Entry]


def _unchanged(hit: Entry, objs: Sequence[object], args: tuple[object, ...]) -> bool:
    if len(objs) != len(hit.objs) or hit.args != args:
        return False
    for obj, old, reads in zip(objs, hit.objs, hit.reads, strict=True):
        if obj is old:
            continue
        for name, value in reads.items():
            if getattr(obj, name) != value:
                return False
    return True


def recall(
    memo: Memo | None,
    key: tuple[str, ...],
    objs: Sequence[object],
    build: Callable[..., T],
    args: tuple[object, ...] = (),
) -> tuple[T, bool]:
    """`build(*objs, *args)`, or its remembered result if nothing it read has changed.

    Returns the result and whether it was built now.
    """
    hit = memo.get(key) if memo is not None else None
    if hit is not None and _unchanged(hit, objs, args):
        return hit.value, False
    views = [_Tracked(o) for o in objs]
    value = build(*views, *args)
    reads = tuple(v.__dict__ for v in views)
    if memo is not None:
        memo[key] = Entry(tuple(objs), reads, args, value)
    return value, True
