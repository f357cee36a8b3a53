"""Generating text on llama.cpp: the one seam to llama-cpp-python (`llama.LlamaModel`), the chat
engine that builds prompts (a fixed head, then the conversation) and streams replies and
autocompletions (`engine`), the reply stream and its result (`reply`), sampling settings and
the one rule for their values (`sampling`), and forever conversations (`loops`).

Contract: nothing outside `llama` touches llama_cpp (tests/test_llama_seam.py checks it); the
engine takes plain turns and sampling settings and returns plain results (`reply.Reply`).
"""
