"""Jinja compiles each template once a test process, as a digestd process does.

digestd builds one Jinja environment a process (the web app's, the renderer's) and compiles
each template once into it. Tests build a new app or renderer for nearly every test, so each
test compiled the same templates again: a fifth of the CPU of the web tests (parsing and
generating Python, then `compile`). Here `Environment.compile` keeps the code object it made
for the same source under the same compile-time options (lexer, autoescape for that name,
filters' and tests' calling conventions, extensions...), and a new environment gets it
instead of compiling again. A code object is immutable: each environment still makes its own
template module from it, so nothing else is shared between tests. A template that does not
compile raises as before (failures are not kept), and a changed source is a new key.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType
from typing import Any

from jinja2 import Environment
from jinja2.utils import _PassArg


def _calling(functions: dict[str, Any]) -> tuple[tuple[str, object], ...]:
    """Names and how the compiler calls each (context, eval context, environment, plain)."""
    return tuple(sorted((name, _PassArg.from_obj(f)) for name, f in functions.items()))


def compile_options(env: Environment, name: str | None) -> tuple[object, ...]:
    """Everything of `env` the code Jinja generates for template `name` depends on."""
    autoescape = env.autoescape(name) if callable(env.autoescape) else env.autoescape
    return (
        type(env),
        env.code_generator_class,
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        bool(autoescape),
        env.optimized,
        env.is_async,
        env.finalize,
        tuple(sorted(env.extensions)),
        _calling(env.filters),
        _calling(env.tests),
        tuple(sorted((k, repr(v)) for k, v in env.policies.items() if k.startswith("compiler."))),
    )


def compile_templates_once() -> Callable[[], None]:
    """Install the memo on `jinja2.Environment.compile`; returns the undo."""
    original = Environment.compile
    made: dict[tuple[object, ...], CodeType | str] = {}

    def compile(
        self: Environment,
        source: Any,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        if not isinstance(source, str):  # a parsed node tree: compiled as given
            return original(self, source, name, filename, raw, defer_init)  # type: ignore[call-overload]
        key = (compile_options(self, name), source, name, filename, raw, defer_init)
        code = made.get(key)
        if code is None:
            code = original(self, source, name, filename, raw, defer_init)  # type: ignore[call-overload]
            made[key] = code
        return code

    Environment.compile = compile  # type: ignore[method-assign]

    def undo() -> None:
        Environment.compile = original  # type: ignore[method-assign]

    return undo
