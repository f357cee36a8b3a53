"""The training recipe: the settings of a run (`TrainConfig`) and how long it is when the
user doesn't say (steps from the data size and the device).

Contract: `plan_steps(rows, batch_size, seq_len, device, bf16=...)` returns a `Plan`
(optimiser steps, the passes over the data they make, and a sentence saying why), the same
for the same arguments. `steps` or `epochs`, when given, win over the recipe.

The recipe, chosen with `benchmarks/imitation.py` on two chats and timed with
`benchmarks/train_time.py`:
- a small chat is passed over more than once, until the run has `MIN_STEPS` steps (at most
  `MAX_PASSES` passes): one pass over a few hundred messages is 15-20 steps, too few for the
  persona to beat a prompt that shows the base model the person's messages;
- a larger chat gets `LARGE_PASSES` passes: Marco's ten-month chat (`benchmarks/chats`) took
  two passes to write his rarer habits (laughter, emoji) as often as he does;
- on the CPU a run stops at `CPU_TOKEN_BUDGET` tokens, about 11 minutes at the 150 tokens/s
  of a 2-core machine, so a 5,000-message chat trains in under 15 minutes there; a CPU that
  trains in bf16 (`devices.cpu_bf16`: about 1.5x the tokens/s) gets `CPU_BF16_TOKEN_BUDGET`,
  enough for Marco's chat to get 1.7 of its 2 passes (`benchmarks/train_time.py` times it).
  A GPU has no such budget.

Steps count packed rows, and `packing.fold` computes an example that begins another one inside
it: a pass over either chat above is 23% fewer tokens than its examples laid end to end.

Re-measured with `benchmarks/recipe.py` (README, Results): rank 32 on both chats and learning
rates 1e-4 and 4e-4 on the second did no better than rank 16 and 2e-4 beyond the spread between
training seeds. A dataset's 16 earlier messages at most (its `--context`) against 32, on the
second chat only, where no session is longer than 16 messages: the same data. In bf16, three
training seeds of this recipe on the second chat write replies closer to his than the prompted
base on 5, 6 and 7 of 7 style features (`benchmarks/sampling_style.py`); 80 steps instead of
68 did no better (6 of 7) and lost on the detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from convsim.core.config import Config
from convsim.core.system.devices import PRECISIONS

__all__ = [
    "CPU_BF16_TOKEN_BUDGET",
    "CPU_TOKEN_BUDGET",
    "LARGE_PASSES",
    "MAX_PASSES",
    "MIN_STEPS",
    "Plan",
    "TrainConfig",
    "plan_steps",
]

MIN_STEPS = 40
MAX_PASSES = 3.0
LARGE_PASSES = 2.0
CPU_TOKEN_BUDGET = 100_000
CPU_BF16_TOKEN_BUDGET = 140_000


def _lora_targets() -> list[str]:
    # convert.names owns the list (it maps each to its GGUF name); imported here, not at the
    # top, because it brings gguf and numpy in.
    from convsim.convert.names import LORA_TARGETS

    return list(LORA_TARGETS)


@dataclass
class TrainConfig(Config):
    """How a LoRA is trained. Saved as JSON beside every run (`run.json`)."""

    setting_kind: ClassVar[str] = "training"

    rank: int = 16  # LoRA rank r
    alpha: float = 32.0  # LoRA alpha; the update is scaled by alpha / rank
    dropout: float = 0.05  # dropout on the LoRA input
    # Linear layers that get a LoRA (leaf names, shared by gemma3, llama, mistral and qwen).
    target_modules: list[str] = field(default_factory=_lora_targets)
    learning_rate: float = 2e-4
    schedule: str = "cosine"  # "cosine", "linear" or "constant", after a linear warm-up
    warmup_steps: int = 10
    steps: int | None = None  # total optimiser steps; None = from `epochs`
    epochs: float | None = None  # passes over the rows; both None = from the data (recipe.py)
    seq_len: int = 512  # tokens per packed row (the model's context window in training)
    batch_size: int = 4  # packed rows per step
    # Rows per forward/backward pass (gradients accumulate over the batch: the same step, with
    # one pass's activations in memory). None = 1 on CPU and MPS, the whole batch on CUDA.
    micro_batch_size: int | None = None
    loss_on: str = "target"  # "target": the person's turn only; "all": every token
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # steps between validation passes (0 = only at the end)
    eval_rows: int = 32  # at most this many validation rows per pass
    samples: int = 2  # sample generations per validation pass
    sample_tokens: int = 32  # new tokens per sample generation
    checkpoint_every: int = 50  # steps between checkpoints (0 = only at the end)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "mps"
    # "auto": bf16 on CUDA and on CPUs with bf16 instructions (devices.choose_device), else
    # fp32; "fp32" or "bf16" on any device. The LoRA's own weights stay fp32.
    precision: str = "auto"
    threads: int | None = None  # CPU threads for torch; None = torch's default
    objective: str = "next_message"  # what is learnt (see objectives.OBJECTIVES)
    # A PEFT adapter folder (a finished run's `adapter/`) to start from instead of a fresh
    # LoRA; its rank, alpha and target modules must match these settings.
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, not {self.schedule!r}")
        if self.precision not in PRECISIONS:
            names = f"{', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}"
            raise ValueError(f"precision must be {names}, not {self.precision!r}")
        if self.loss_on not in ("target", "all"):
            raise ValueError(f"loss_on must be 'target' or 'all', not {self.loss_on!r}")
        if self.rank < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise ValueError("rank and batch_size must be >= 1 and seq_len >= 8")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, not {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, not {self.epochs}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, not {self.micro_batch_size}")

    def check_new(self) -> None:
        """`check`, and the ranges a new run's settings must be in. Not applied to settings
        read back from a finished run (`runs.run_config`): older versions accepted more."""
        self.check()
        for name in ("learning_rate", "alpha", "max_grad_norm"):
            if not 0 < getattr(self, name) < math.inf:  # also refuses nan
                raise ValueError(f"{name} must be a number above 0, not {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be from 0 up to (not including) 1, not {self.dropout}")
        if self.warmup_steps < 0 or not 0 <= self.weight_decay < math.inf:
            raise ValueError("warmup_steps and weight_decay must be 0 or more")
        known = _lora_targets()
        if not self.target_modules or not set(self.target_modules) <= set(known):
            raise ValueError(
                f"target_modules must be some of {', '.join(known)}, not {self.target_modules}"
            )


@dataclass(frozen=True)
class Plan:
    steps: int
    passes: float  # over the training rows
    per_pass: int  # steps in one pass
    why: str  # for the training log, e.g. "small chat: 2.1 passes"


def plan_steps(
    rows: int,
    batch_size: int,
    seq_len: int,
    device: str,
    *,
    bf16: bool = False,
    steps: int | None = None,
    epochs: float | None = None,
) -> Plan:
    """The steps for `rows` packed training rows of `seq_len` tokens, `batch_size` a step, on
    `device` (training in bf16 when `bf16`)."""
    per_pass = max(1, math.ceil(rows / batch_size))
    if steps is not None:
        return Plan(steps, steps / per_pass, per_pass, "steps as set")
    if epochs is not None:
        return Plan(max(1, round(epochs * per_pass)), epochs, per_pass, "passes as set")
    if per_pass < MIN_STEPS:
        planned = min(MIN_STEPS, round(MAX_PASSES * per_pass))
        why = "small chat"
    else:
        planned, why = round(LARGE_PASSES * per_pass), "larger chat"
    if device == "cpu":
        tokens = CPU_BF16_TOKEN_BUDGET if bf16 else CPU_TOKEN_BUDGET
        budget = max(1, tokens // (batch_size * seq_len))
        if planned > budget:
            planned, why = budget, f"CPU time budget of {tokens:,} tokens"
    return Plan(planned, planned / per_pass, per_pass, f"{why}: {planned / per_pass:.2g} passes")
