"""Textual imports its widgets lazily (textual.widgets.__getattr__) and reads a few data files
(the default CSS, tree-sitter queries): collect all of it."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("textual")
datas = collect_data_files("textual") + copy_metadata("textual")
