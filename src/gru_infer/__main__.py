"""python -m gru_infer: the gru-infer command (same subcommands and flags)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m gru_infer"))
