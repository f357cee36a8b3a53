"""`python -m convsim.tui.cli`: the same as the `convsim` command."""

from convsim.tui.cli.main import main

raise SystemExit(main())
