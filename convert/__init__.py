"""Everything GGUF: adapters, merges, quantisation (built in the training issue)."""
