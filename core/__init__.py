"""convsim's engine: importers, store, datasets (and later training and inference).

Never imports Textual; heavy libraries (torch, transformers, llama_cpp) are imported inside the
functions that need them.
"""
