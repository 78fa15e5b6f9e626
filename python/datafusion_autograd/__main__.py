"""The command line: ``python -m datafusion_autograd differentiate EXPR COLUMN``.

Prints the derivative SQL. Usage errors exit with status 2, expressions that
cannot be differentiated (or written for the chosen engine) with status 1,
each with a message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from datafusion_autograd._native import AutogradError
from datafusion_autograd.dialects import DIALECTS, differentiate

PROG = "python -m datafusion_autograd"


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    root = argparse.ArgumentParser(
        prog=PROG, description="Differentiable SQL for Apache DataFusion."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    derivative = commands.add_parser(
        "differentiate",
        help="print the derivative of a SQL expression",
        description=(
            "Print the derivative of the SQL expression EXPR with respect to the "
            "column COLUMN, as SQL. Every identifier in EXPR is a DOUBLE column."
        ),
        epilog=f'example: {PROG} differentiate "sin(x) * y" x --dialect duckdb',
    )
    derivative.add_argument("expression", metavar="EXPR", help="a SQL scalar expression")
    derivative.add_argument("column", metavar="COLUMN", help="the column to differentiate by")
    derivative.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="datafusion",
        help="the engine to write the derivative for (default: %(default)s)",
    )
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line on ``argv`` and returns the exit status."""
    args = parser().parse_args(argv)
    try:
        print(differentiate(args.expression, args.column, args.dialect))
    except AutogradError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
