"""The demos' SQL: ``.sql`` files in a folder per demo, read by name.

Every file starts with a comment saying what it computes and which tables it
reads. None is a template: a file runs as it is in any DataFusion session that
has those tables and, where it differentiates, the ``grad``/``jvp``/``vjp``
markers registered. Values that change between runs or steps, such as a
learning rate or the step number, are read from one-row tables.

>>> statements("mlp_digits/select_batch")[1].splitlines()[0]
'CREATE OR REPLACE TABLE batch_labels AS'
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent

# Statements end with a semicolon at the end of a line.
END_OF_STATEMENT = re.compile(r";[ \t]*$", re.MULTILINE)


@functools.cache
def statements(name: str) -> tuple[str, ...]:
    """The statements of ``<name>.sql``, in order, without their semicolons and comment lines.

    Dropping whole-line comments first lets them say anything, semicolons included.

    >>> len(statements("mlp_digits/updates"))
    4
    """
    text = (DIRECTORY / f"{name}.sql").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return tuple(part.strip() for part in END_OF_STATEMENT.split(code) if part.strip())


def statement(name: str) -> str:
    """The one statement of ``<name>.sql``.

    >>> statement("mlp_digits/metrics").startswith("SELECT")
    True
    """
    found = statements(name)
    if len(found) != 1:
        raise ValueError(f"{name}.sql holds {len(found)} statements, not one")
    return found[0]
