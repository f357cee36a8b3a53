"""Everything GGUF: reading model metadata, name maps, LoRA adapters, merges and quantisation.

Modules (import the one you need; this package imports nothing heavy):
- `gguf_info`: `read_info(path) -> GGUFInfo`, fast header-only metadata of a model GGUF.
- `names`: HF module name <-> GGUF tensor name, LoRA-able layers, llama's q/k permutation.
- `adapter`: PEFT LoRA -> llama.cpp runtime LoRA adapter GGUF (`write_lora_adapter`).
- `merge`: LoRA merged into the base GGUF (`merge_lora`).
- `quantize`: llama.cpp quantisation (`quantize`) and merge + quantise in one call (`export`).
- `llama_logs`: `quiet_llama_logs()`, silences llama.cpp's C-level logging.
- `vocab`: `llama_cpp_tokens(path, texts)`, llama.cpp's tokenization of a GGUF (no weights).
- `gguf_file`: the lean GGUF reader/writer the others use.

`QUANT_KINDS` (here, so menus and parsers need no heavy import) names every kind `quantize`
writes, with what it is good for.
"""

QUANT_KINDS = {"q8_0": "best", "q4_k_m": "smallest", "f16": "unquantised"}
