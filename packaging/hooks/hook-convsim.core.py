"""convsim.core: its sample chat (package data) and every submodule (the CLI imports lazily)."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

datas = collect_data_files("convsim.core") + copy_metadata("convsim")
hiddenimports = collect_submodules("convsim.core") + collect_submodules("convsim.convert")
