"""The README's Dialects and Command line examples, run as written."""

from __future__ import annotations

import doctest
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_the_python_examples_print_what_they_show() -> None:
    (examples,) = blocks("pycon")
    test = doctest.DocTestParser().get_doctest(examples, {}, "README.md", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 5


def commands() -> list[tuple[str, str]]:
    """Each ``$ command`` of the console examples with the lines it prints."""
    (console,) = blocks("console")
    pairs = re.findall(r"^\$ (.*)\n((?:[^$].*\n)*)", console, flags=re.MULTILINE)
    assert len(pairs) >= 3
    return pairs


@pytest.mark.parametrize("command, output", commands())
def test_the_command_line_examples_print_what_they_show(command: str, output: str) -> None:
    program, *args = shlex.split(command)
    assert program == ".venv/bin/python"
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert run.stdout + run.stderr == output
