"""convsim.tui: the app's .tcss stylesheets (package data) and every screen and command module,
which the CLI and the app import inside functions."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules

datas = collect_data_files("convsim.tui")
hiddenimports = collect_submodules("convsim.tui")
