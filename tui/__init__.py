"""The convsim user interfaces: the command line (`cli`) and the Textual app (`app`).

Both talk to `convsim.core` only through its packages' public names; neither holds domain logic.
"""

from convsim.core import __version__

__all__ = ["__version__"]
