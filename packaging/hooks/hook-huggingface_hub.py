"""huggingface_hub fills model cards from template files (peft writes one beside every adapter
it saves): ship its data files."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("huggingface_hub")
