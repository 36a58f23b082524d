"""The README's rows on ``mvlift lift`` and ``mvlift data show`` name real options, and the ones a user needs
(issue 12: ``--skeleton``, ``--max-gap``, the ``data show`` camera)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mvlift.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def _readme_text_on(command: str) -> str:
    """The README's table row of ``command`` and, for lift, its own section."""
    readme = README.read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith(f"| `mvlift {command} ")]
    assert len(rows) == 1, f"README has {len(rows)} table rows for mvlift {command}"
    text = rows[0]
    if command == "lift":
        text += readme.split("### Lifting a keypoint file", 1)[1].split("\n### ", 1)[0]
    return text


def test_readme_documents_lift_and_data_show_options():
    parser = build_parser()
    for command, path, needed in (
        ("lift", ("lift",), {"--skeleton", "--max-gap", "--out", "--model", "--stage2-weight"}),
        ("data show", ("data", "show"), {"--azimuth", "--distance", "--out"}),
    ):
        real = _options(_subparser(parser, *path))
        text = _readme_text_on(command)
        mentioned = set(re.findall(r"--[a-z][a-z0-9-]*", text))
        assert needed <= real, f"mvlift {command} lost options {sorted(needed - real)}"
        assert needed <= mentioned, f"README does not mention mvlift {command} {sorted(needed - mentioned)}"
        assert mentioned <= real, f"README names options mvlift {command} lacks: {sorted(mentioned - real)}"
