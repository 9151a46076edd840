"""Reading a JSON request body: anything malformed, however deeply nested, is one clear 400.

The standard library's decoder recurses once per nesting level and raises RecursionError
(not ValueError) past the interpreter's limit, so `[` × 30,000 used to escape the routes'
`except ValueError` and end as a 500 with a traceback. Every JSON-accepting route reads
its body through `read_json`.
"""

from __future__ import annotations

import json
from typing import Any


class InvalidJson(ValueError):
    """The body is not JSON we can read; the message is one line for the 400 answer."""


def read_json(raw: bytes) -> Any:
    """The decoded body, or InvalidJson saying what is wrong with it."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidJson("The body is not valid JSON: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"The body is not valid JSON: {str(exc)[:120]}") from None
