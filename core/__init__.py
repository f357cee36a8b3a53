"""convsim's engine, one subpackage per pipeline stage, no user interface.

Data flows one way: `chats` (importers: chat export -> `ParsedChat`) -> `store` (SQLite) ->
`data` (turn format, training datasets) -> `training` (LoRA on torch) -> `convsim.convert` (GGUF)
-> `inference` (llama.cpp). `bases` prepares the base models, `evaluation` measures personas,
`system` describes the installation; `locations` names every path and `workspace` ties the store
to its files.

Contract: never imports Textual, never prints or exits; heavy libraries (torch, transformers,
llama_cpp) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
