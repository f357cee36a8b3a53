"""llama-cpp-python loads libllama and the ggml backends with ctypes from llama_cpp/lib at run
time, which no import analysis can see: collect every shared library there, symlinked names
included (libllama.so -> libllama.so.0 -> ...), at the same relative place."""

from PyInstaller.utils.hooks import (
    collect_data_files,
    collect_dynamic_libs,
    collect_submodules,
    copy_metadata,
)

binaries = collect_dynamic_libs(
    "llama_cpp", search_patterns=["*.so", "*.so.*", "*.dylib", "*.dll", "*.metal"]
)
# The OpenAI-compatible server needs extras convsim does not ship.
hiddenimports = collect_submodules("llama_cpp", filter=lambda name: ".server" not in name)
datas = collect_data_files("llama_cpp", excludes=["**/*.so*", "**/*.dylib", "**/*.dll"])
datas += copy_metadata("llama_cpp_python")
