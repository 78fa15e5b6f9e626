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


def require_release_build() -> None:
    """Stops a full benchmark run that would time a debug build of the extension.

    ``maturin develop`` (what ``scripts/dev.sh setup`` runs) builds the test
    profile, without optimisations, several times slower than a release build;
    timings of it say nothing about the engine.
    """
    from datafusion_autograd import _native

    if not _native.OPTIMIZED:
        raise SystemExit(
            "the installed datafusion_autograd extension is a debug build; build a release one first:\n"
            "    VIRTUAL_ENV=$PWD/.venv .venv/bin/maturin develop --release --locked\n"
            "(and run `bash scripts/dev.sh setup` afterwards to go back to the test build)"
        )
