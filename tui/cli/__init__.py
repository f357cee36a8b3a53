"""The `convsim` command line: one module per group of commands, `main` builds the parser.

Start-up must stay fast: nothing heavy (torch, transformers, llama_cpp, textual) is imported at
module level; each command imports what it needs.
"""

from convsim.tui.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
