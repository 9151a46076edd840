"""SQLAlchemy compiles each statement once a test process, as a digestd process does.

A digestd process has one engine, and SQLAlchemy compiles each statement once into that
engine's cache. Tests make an engine for nearly every test (a new database each), and the
cache is the engine's, keyed by the dialect object itself, so every test compiled the same
statements again: about a tenth of the CPU of the database tests (issue 24). The ORM's
per-mapper caches (the flush's INSERTs and UPDATEs) are keyed the same way.

Here all those caches become views of one cache a process, where a dialect in a key stands
for every dialect of the same class and the same settings (paramstyle, server version,
features found when it first connected...: its plain attributes). Two such dialects compile
a statement to the same SQL. The schema a PostgreSQL test's connections use is set by its
search_path, never written into the SQL, so it is left out (`default_schema_name`), except
for statements compiled with a schema_translate_map, which keep their own dialect. A
compiled statement is immutable once cached: nothing else is shared between tests.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from types import BuiltinFunctionType, FunctionType
from typing import Any

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Mapper
from sqlalchemy.util import LRUCache

# Statements the whole suite compiles, both backends (each engine's own cache holds 500).
CAPACITY = 20_000
_PLAIN = (str, int, float, bool, type(None), tuple, FunctionType, BuiltinFunctionType)
# Attributes that differ between dialects compiling the same SQL.
_NOT_IN_SQL = frozenset({"default_schema_name"})


def settings_of(dialect: Dialect) -> tuple[object, ...]:
    """What of `dialect` the SQL it compiles depends on: its class and plain attributes."""
    items = sorted(
        (name, value)
        for name, value in vars(dialect).items()
        if name not in _NOT_IN_SQL and isinstance(value, _PLAIN)
    )
    return (type(dialect), tuple(items))


class SharedCompiledCache:
    """A view of one LRU cache, with the dialect in each compiled-statement key replaced by
    its settings; what SQLAlchemy calls on a compiled cache."""

    def __init__(self, shared: LRUCache[Any, Any]) -> None:
        self._shared = shared
        self._settings: weakref.WeakKeyDictionary[Dialect, tuple[object, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _key(self, key: Any) -> Any:
        # SQLAlchemy's key: (dialect, statement key, column keys, schema_translate_map?, many)
        if not (isinstance(key, tuple) and len(key) == 5 and isinstance(key[0], Dialect)):
            return key
        dialect = key[0]
        if key[3]:  # a schema_translate_map: the dialect's own default schema may be used
            return key
        settings = self._settings.get(dialect)
        if settings is None:
            settings = settings_of(dialect)
            if dialect.server_version_info is not None:  # connected once: settings final
                with self._lock:
                    self._settings[dialect] = settings
        return (settings, *key[1:])

    def get(self, key: Any, default: Any = None) -> Any:
        return self._shared.get(self._key(key), default)

    def __getitem__(self, key: Any) -> Any:
        return self._shared[self._key(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._shared[self._key(key)] = value

    def __delitem__(self, key: Any) -> None:
        del self._shared[self._key(key)]

    def __contains__(self, key: Any) -> bool:
        return self._key(key) in self._shared._data

    def __len__(self) -> int:
        return len(self._shared)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._shared)

    def values(self) -> Any:
        return self._shared.values()

    def clear(self) -> None:
        self._shared._data.clear()


def share_compiled_statements() -> Callable[[], None]:
    """Give every engine made from now on, and every mapper's flush, the shared cache;
    returns the undo."""
    view = SharedCompiledCache(LRUCache(CAPACITY))
    original_init = Engine.__init__
    original_mapper_cache = Mapper.__dict__["_compiled_cache"]

    def init(self: Engine, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self._compiled_cache is not None:  # query_cache_size=0 turns caching off
            self._compiled_cache = view  # type: ignore[assignment]

    Engine.__init__ = init  # type: ignore[method-assign]
    Mapper._compiled_cache = property(lambda self: view)  # type: ignore[assignment,method-assign]

    def undo() -> None:
        Engine.__init__ = original_init  # type: ignore[method-assign]
        Mapper._compiled_cache = original_mapper_cache  # type: ignore[method-assign]

    return undo
