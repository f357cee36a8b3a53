"""The convsim user interfaces: the command line (`cli`) and, later, the Textual app."""

__version__ = "0.1.0"
