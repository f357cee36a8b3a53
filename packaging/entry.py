"""Entry point of the frozen (PyInstaller) convsim app: the same `main()` as the console script."""

import multiprocessing
import sys

from convsim.tui.cli import main

if __name__ == "__main__":
    # A frozen program that starts worker processes must let them through here first.
    multiprocessing.freeze_support()
    sys.exit(main())
