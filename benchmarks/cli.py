"""The command line every script shares: ``--quick`` and, for scripts that draw, ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

# Where the committed plots live; --out sends a run's plots elsewhere.
RESULTS = Path(__file__).resolve().parent / "results"


def arguments(doc: str, quick: str, draws: bool = False, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The options as keyword arguments for the script's ``main``.

    ``doc`` is the script's docstring (its first line describes the command),
    ``quick`` says what ``--quick`` shrinks to, and ``draws`` adds ``--out``
    for the directory of the PNG files.

    >>> arguments("Fits a line.", quick="100 steps", argv=["--quick"])
    {'quick': True}
    >>> options = arguments("Draws a map.", quick="a small grid", draws=True, argv=[])
    >>> options["quick"], options["out"].name
    (False, 'results')
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    if draws:
        parser.add_argument("--out", type=Path, default=RESULTS, help=f"directory for the plots (default {RESULTS})")
    return vars(parser.parse_args(argv))
