"""MkDocs hook: `<!-- gru-infer-help COMMAND -->` in a page becomes that
command's `--help` text, straight from the argparse parser, so the command-line
page cannot drift from the command.  (Used by mkdocs.yml; needs NumPy.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PLACEHOLDER = re.compile(r"<!-- gru-infer-help ?([a-z]*) -->")


def _help(command: str) -> str:
    from gru_infer.cli import build_parser

    parser = build_parser()
    if command:
        subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = subparsers.choices[command]
    return "```text\n" + parser.format_help().rstrip() + "\n```"


def on_page_markdown(markdown: str, **kwargs) -> str:
    return PLACEHOLDER.sub(lambda m: _help(m[1]), markdown)
