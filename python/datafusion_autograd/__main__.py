"""The command line: ``python -m datafusion_autograd differentiate EXPR COLUMN``
and ``python -m datafusion_autograd gradient LOSS TABLE.COLUMN --dialect
ENGINE --table NAME=COLUMN:TYPE,...``.

Prints the derivative SQL, or the statements that compute a whole query's
gradient in another engine. Usage errors exit with status 2, expressions that
cannot be differentiated (or written for the chosen engine) with status 1,
each with a message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import pyarrow as pa

from datafusion_autograd import _native
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
    whole = commands.add_parser(
        "gradient",
        help="print the statements that compute a whole query's gradient in another engine",
        description=(
            "Print the statements that compute the gradient of the loss query LOSS with respect "
            "to PARAMETER (TABLE.COLUMN) in another engine: a CREATE TEMPORARY TABLE per stage, "
            "the query of the gradient (every row of the table, its columns and grad), and the "
            "DROP TABLEs, each ending with a semicolon."
        ),
        epilog=(
            f'example: {PROG} gradient "SELECT SUM(w * w) FROM w" w.w --dialect duckdb '
            "--table w=i:int64,w:double"
        ),
    )
    whole.add_argument("loss", metavar="LOSS", help="a SQL query returning one row with one numeric column")
    whole.add_argument("parameter", metavar="PARAMETER", help="the column to differentiate by, as TABLE.COLUMN")
    whole.add_argument(
        "--dialect", choices=[d for d in DIALECTS if d != "datafusion"], required=True,
        help="the engine to write the statements for",
    )
    whole.add_argument(
        "--table", action="append", default=[], type=_table, metavar="NAME=COLUMN:TYPE,...",
        help="a table the loss reads: its columns and their Arrow types (int64, double, string, ...)",
    )
    whole.add_argument(
        "--view", action="append", default=[], type=_view, metavar="NAME=QUERY",
        help="a view the loss reads, as its query",
    )
    return root


def _table(text: str) -> "tuple[str, pa.Schema]":
    """``NAME=COLUMN:TYPE,...`` as a table's name and schema."""
    name, _, columns = text.partition("=")
    try:
        fields = []
        for column in columns.split(","):
            column_name, _, type_name = column.partition(":")
            fields.append(pa.field(column_name.strip(), pa.type_for_alias(type_name.strip())))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    if not name.strip() or not fields:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=COLUMN:TYPE,...")
    return name.strip(), pa.schema(fields)


def _view(text: str) -> "tuple[str, str]":
    """``NAME=QUERY`` as a view's name and query."""
    name, _, query = text.partition("=")
    if not name.strip() or not query.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=QUERY")
    return name.strip(), query


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line on ``argv`` and returns the exit status."""
    args = parser().parse_args(argv)
    try:
        if args.command == "gradient":
            relations = {**dict(args.table), **dict(args.view)}
            setup, query, cleanup = _native.gradient_statements_for(
                args.loss, args.parameter, args.dialect, relations.get
            )
            for statement in [*setup, query, *cleanup]:
                print(statement + ";")
            return 0
        print(differentiate(args.expression, args.column, args.dialect))
    except AutogradError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
