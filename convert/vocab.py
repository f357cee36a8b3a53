"""llama.cpp's own tokenization of a GGUF, with no weights loaded.

convsim trains in transformers and talks through llama.cpp, so both must cut a text into the
same tokens; this is the reference a transformers tokenizer of the same GGUF is checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def llama_cpp_tokens(gguf_path: Path, texts: Sequence[str]) -> list[list[int]]:
    """Each text as llama.cpp tokenizes it for a prompt: with BOS, special-token text such as
    "<eos>" kept as plain text (`tokenize(text, add_bos=True, special=False)`). Loads only the
    vocabulary (about a second for a 262k-entry one) and prints nothing."""
    import llama_cpp

    from convsim.convert.llama_logs import quiet_llama_logs

    with quiet_llama_logs():
        llm = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(text.encode(), add_bos=True, special=False) for text in texts]
    finally:
        llm.close()
