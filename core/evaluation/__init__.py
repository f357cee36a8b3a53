"""How good is a persona? Held-out perplexity of the person's real messages under the base,
the base with a prompt of their messages, and the tuned model (`perplexity`).

Contract: measures on the GGUFs users run (llama.cpp); results are plain dicts, saved beside
the model.
"""

from convsim.core.evaluation.perplexity import evaluate, evaluate_model

__all__ = ["evaluate", "evaluate_model"]
