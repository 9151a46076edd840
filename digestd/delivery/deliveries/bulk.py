"""Statements of the delivery store run for many rows through the driver's own executemany
(planning's insert, recording's update), each compiled once per dialect.

SQLAlchemy's per-row parameter handling cost about as much as SQLite's work itself
(benchmarks/README.md). Here each parameter's bind processor (a datetime to the driver's
form, say) is applied once per distinct non-None value (the rows of a batch share a few
instants); the statement's own constants come from the compiled statement.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlmodel import Session

from digestd.delivery.deliveries.columns import rowcount


@dataclass(frozen=True)
class _RawStatement:
    """A statement compiled for one dialect, ready for the driver's executemany."""

    sql: str
    positional: bool
    order: tuple[str, ...]  # the driver's parameters, in its order
    # Per driver parameter: (index in a row, or None for a constant of the statement;
    # the constant, in the driver's form; the bind processor, or None).
    getters: tuple[tuple[int | None, Any, Any], ...]
    as_is: bool  # rows go to the driver unchanged: no constant, no processor, same order


# Per dialect (an engine's), the compiled form of each statement builder: compiling a
# statement cost about as much as the driver's work on a group of outcomes. Weak: the
# dialects of engines that are gone (tests make many) take their entries with them.
_COMPILED: weakref.WeakKeyDictionary[Any, dict[Callable[[Any], Any], _RawStatement]] = (
    weakref.WeakKeyDictionary()
)


def raw_statement(dialect: Any, build: Callable[[Any], Any], names: Sequence[str]) -> _RawStatement:
    """`build(dialect)` compiled for `dialect`, once per dialect (see _COMPILED)."""
    per_dialect = _COMPILED.setdefault(dialect, {})
    cached = per_dialect.get(build)
    if cached is not None:
        return cached
    compiled = build(dialect).compile(dialect=dialect)
    fixed = compiled.params
    index = {n: i for i, n in enumerate(names)}
    order = tuple(compiled.positiontup if compiled.positional else fixed)
    getters: list[tuple[int | None, Any, Any]] = []
    for name in order:
        # The dialect's own processor: a TypeDecorator's `bind_processor` alone skips its
        # impl's (on SQLite, the datetime → text format every other statement writes, so
        # text comparisons in SQL agree).
        proc = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        i = index.get(name)
        if i is None:  # a constant of the statement
            getters.append((None, proc(fixed[name]) if proc else fixed[name], None))
        else:
            getters.append((i, None, proc))
    as_is = [(i, proc) for i, _, proc in getters] == [(k, None) for k in range(len(names))]
    raw = _RawStatement(str(compiled), bool(compiled.positional), order, tuple(getters), as_is)
    per_dialect[build] = raw
    return raw


def executemany(
    session: Session,
    build: Callable[[Any], Any],
    names: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> int:
    """Run the Core statement `build(dialect)` (compiled once per dialect) for many rows through
    the driver's own executemany; `rows` give the values of the bound parameters `names`,
    in that order. Returns the rows the statement changed (the driver's count over all)."""
    conn = session.connection()
    raw = raw_statement(conn.dialect, build, names)
    return rowcount(conn.exec_driver_sql(raw.sql, _driver_params(raw, rows)))


def _driver_params(raw: _RawStatement, rows: list[tuple[Any, ...]]) -> list[Any]:
    """`rows` as the driver's parameters for `raw`: constants added, values processed."""
    if raw.as_is or not rows:
        params: list[Any] = rows  # already the driver's values, in its order
    else:
        # Each value with a processor processed (a name the statement binds twice, once),
        # then the driver's parameters picked in its order from the row and the constants.
        procs = {i: _memo(proc) for i, _, proc in raw.getters if i is not None and proc}
        constants = tuple(const for i, const, _ in raw.getters if i is None)
        width = len(rows[0])
        places, k = [], 0
        for i, _, _ in raw.getters:
            places.append(width + k if i is None else i)
            k += i is None
        pick = itemgetter(*places)
        params = []
        for row in rows:
            if procs:
                values = list(row)
                for i, proc in procs.items():
                    if values[i] is not None:
                        values[i] = proc(values[i])
                row = tuple(values)
            picked = pick(row + constants)
            params.append(picked if len(places) > 1 else (picked,))
    if not raw.positional:  # PostgreSQL's psycopg: named parameters
        params = [dict(zip(raw.order, p, strict=True)) for p in params]
    return params


def _memo(proc: Any) -> Any:
    """`proc` applied once per distinct value, for one statement's rows."""
    done: dict[Any, Any] = {}

    def processed(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            done[value] = out = proc(value)
            return out
        except TypeError:  # not hashable (a JSON list, say): as it is
            return proc(value)

    return processed
