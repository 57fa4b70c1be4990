"""Text and JSON that every store accepts: valid UTF-8, no control characters, no NaN.

Text from the job (exception messages, tracebacks, file names from ``os.fsdecode``, which
turns undecodable bytes into lone surrogates) reaches result files, terminals and the
database. A lone surrogate cannot be encoded as UTF-8, so SQLite and PostgreSQL refuse
the row and the student's feedback is lost; a NUL byte is refused by PostgreSQL; escape
sequences would drive a staff member's terminal. ``clean_text`` is the one place that
makes such text safe; the result types apply it to every string they hold.

``dump_json`` is the one way result JSON is written: ``allow_nan=False``, so a NaN or an
infinity that slipped into a result is our bug, raised here, never an invalid JSON file.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 controls except tab, newline and carriage return; DEL; every surrogate code point
# (a Python str holds surrogates only unpaired: json and fsdecode join real pairs).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def clean_text(value: object, limit: int | None = None) -> str:
    """``value`` as text that encodes as UTF-8 and has no control characters; at most
    ``limit`` characters (cut with " …") when given."""
    text = value if isinstance(value, str) else str(value)
    text = _UNSAFE.sub(REPLACEMENT, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 2)] + " …"
    return text


def dump_json(data: Any, *, indent: int | None = 2) -> str:
    """Result JSON: strict (no NaN or infinity), ASCII-escaped; ValueError on a non-finite number."""
    return json.dumps(data, indent=indent, allow_nan=False)
