"""Generating text on llama.cpp: the one seam to llama-cpp-python (`llama`), the chat engine
that streams replies and autocompletes (`engine`), and forever conversations (`loops`).

Contract: nothing outside `llama` touches llama_cpp; the engine takes plain turns and sampling
settings and returns plain results.
"""
