"""The convsim user interfaces: the command line (`cli`) and the Textual app (`app`)."""

__version__ = "0.1.0"
