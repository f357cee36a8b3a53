"""Keeping a training run inside a laptop's memory, and measuring what it took.

Where a LoRA step's memory goes on CPU (float32, Gemma 3 270M, 4 packed rows of 512 tokens):
the weights (about 1 GB, two thirds of it the 262k-token embedding, tied to the LM head) and
the activations autograd keeps for the backward pass, about 0.9 GB per 512-token row (LoRA's
dropout copies of every adapted layer's input among them). The trainer therefore runs a step
as micro-batches (`TrainConfig.micro_batch_size`, one row at a time on CPU), accumulating
gradients, so only one row's activations are alive at once. The vocabulary projection, the
other big tensor (positions x 262k logits, plus as much again for their gradient), goes
through `lm_head_loss`, which never holds more than a chunk of logits. On a CPU that trains
in bf16 (`devices.choose_device`) the weights and activations take half as much: 2.5 GB at the
peak of `benchmarks/train_speed.py` against 3.4 GB in float32.

Contract:
- `lm_head_loss(hidden, head, targets, softcap)`: the cross-entropy of `head(hidden)` against
  `targets`, *summed*, with Gemma's final-logit softcapping when `softcap` is set; equal to
  `F.cross_entropy(softcap(head(hidden).float()), targets, reduction="sum")` and its gradients
  (to float rounding), computed `chunk` rows at a time. The gradient is worked out in the
  forward pass, chunk by chunk, so nothing is recomputed and only (rows x hidden) is kept.
  `per_row=True` returns the (rows,) cross-entropies, for a frozen head.
- `backward_in_parts(objective, model, batch, setup, size, params)`: a step's backward pass
  in micro-batches of `size` items, gradients accumulated (any objective: losses are sums).
- `PeakMemory`: `start()` forgets earlier peaks where the OS allows (Linux; CUDA), `read()`
  returns `{"peak_rss_bytes": ..., "peak_gpu_bytes": ...}` since then (GPU: None off CUDA);
  `peak_memory_text(metrics)` says it for people ("peak memory 3.1 GB").
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "PeakMemory",
    "backward_in_parts",
    "format_bytes",
    "lm_head_loss",
    "max_rss_bytes",
    "peak_memory_text",
]

CHUNK_BYTES = 128 * 2**20
"""About this many bytes of float32 logits exist at once in `lm_head_loss`."""


def lm_head_loss(
    hidden: Any,
    head: Any,
    targets: Any,
    softcap: float | None = None,
    chunk: int | None = None,
    *,
    per_row: bool = False,
) -> Any:
    """Summed cross-entropy of the linear layer `head` (an `nn.Linear`, e.g. a tied LM head)
    applied to `hidden` (N, H), against `targets` (N,), without ever holding (N, vocabulary)
    logits: `chunk` rows at a time (default: `CHUNK_BYTES` of float32 logits). `per_row`: the
    (N,) cross-entropies instead of their sum, for a frozen head (gradients to `hidden` only).
    One call for many rows is much faster than a call per few: each reads the whole head."""
    import torch

    weight, bias = head.weight, head.bias
    if chunk is None:
        chunk = max(1, CHUNK_BYTES // (4 * weight.shape[0]))
    needs = [t is not None and t.requires_grad for t in (hidden, weight, bias)]
    if per_row and (needs[1] or needs[2]) and torch.is_grad_enabled():
        raise ValueError("per-row losses need a frozen head")
    if torch.is_grad_enabled() and any(needs):
        return _function().apply(hidden, weight, bias, targets, softcap, chunk, needs, per_row)
    rows = []
    with torch.no_grad():
        for start in range(0, hidden.shape[0], chunk):
            end = start + chunk
            rows.append(_chunk(hidden[start:end], weight, bias, targets[start:end], softcap, None))
    losses = torch.cat(rows) if rows else torch.zeros(0, device=hidden.device)
    return losses if per_row else losses.sum()


def _chunk(h: Any, weight: Any, bias: Any, targets: Any, softcap: float | None, grads: Any) -> Any:
    """The loss of each row of one chunk; with `grads` (grad_h slice, grad_w, grad_b: tensors
    to fill or accumulate into, or None where not wanted), the chunk's gradients as well."""
    import torch
    import torch.nn.functional as F

    logits = F.linear(h, weight, bias).float()
    tanh = None
    if softcap:
        tanh = torch.tanh(logits / softcap)
        logits = tanh * softcap
    lse = torch.logsumexp(logits, dim=-1)
    loss = lse - logits.gather(1, targets[:, None])[:, 0]
    if grads is None:
        return loss
    # d loss / d logits = softmax - one_hot(target), built in place in the logits' buffer.
    g = logits.sub_(lse[:, None]).exp_()
    g[torch.arange(g.shape[0], device=g.device), targets] -= 1
    if tanh is not None:  # through logits = c * tanh(z / c): times 1 - tanh^2
        g.mul_(tanh.mul_(tanh).neg_().add_(1))
        del tanh
    g = g.to(weight.dtype)
    grad_h, grad_w, grad_b = grads
    if grad_h is not None:
        grad_h.copy_(g @ weight)
    if grad_w is not None:
        grad_w.addmm_(g.t().float(), h.float())
    if grad_b is not None:
        grad_b.add_(g.float().sum(0))
    return loss


@functools.cache
def _function() -> Any:
    """The autograd Function, made on first use (torch is imported lazily)."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        """Forward computes the loss and, chunk by chunk, the gradients it will need; backward
        only scales them (row by row for per-row losses). Nothing of size (rows x vocabulary)
        outlives a chunk."""

        @staticmethod
        def forward(  # type: ignore[override]
            ctx: Any,
            hidden: Any,
            weight: Any,
            bias: Any,
            targets: Any,
            softcap: float | None,
            chunk: int,
            needs: list[bool],
            per_row: bool,
        ) -> Any:
            grad_h = torch.empty_like(hidden) if needs[0] else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if needs[1] else None
            grad_b = torch.zeros_like(bias, dtype=torch.float32) if needs[2] else None
            rows = []
            for start in range(0, hidden.shape[0], chunk):
                end = start + chunk
                grads = (grad_h[start:end] if grad_h is not None else None, grad_w, grad_b)
                rows.append(_chunk(hidden[start:end], weight, bias, targets[start:end], softcap,
                                   grads))  # fmt: skip
            ctx.grads = (grad_h, grad_w, grad_b)
            ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
            ctx.per_row = per_row
            losses = torch.cat(rows) if rows else torch.zeros(0, device=hidden.device)
            return losses if per_row else losses.sum()

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:  # type: ignore[override]
            grads, ctx.grads = ctx.grads, None
            if ctx.per_row:  # the head is frozen: the hidden states' gradient, row by row
                grad_out = grad_out[:, None]
            scaled = [
                None if g is None else (g * grad_out).to(dtype)
                for g, dtype in zip(grads, ctx.dtypes, strict=True)
            ]
            return (*scaled, None, None, None, None, None)

    return LinearCrossEntropy


def backward_in_parts(
    objective: Any, model: Any, batch: Sequence[Any], setup: Any, size: int, params: Any
) -> tuple[float, int, int]:
    """Backpropagate `objective`'s loss over `batch`, `size` items per forward/backward pass,
    leaving in `params`' (zeroed) gradients the gradient of the batch's mean loss per unit;
    returns (summed loss, units it sums over, tokens computed). Only one pass's activations
    are alive at a time."""
    total, count, tokens = 0.0, 0, 0
    for i in range(0, len(batch), size):
        summed = objective.loss(model, batch[i : i + size], setup)
        if summed.total.requires_grad:
            summed.total.backward()
        total += float(summed.total.detach())
        count += summed.count
        tokens += summed.tokens
        del summed  # this pass's graph goes before the next one is built
    for p in params:  # gradients of the sum -> of the mean
        if p.grad is not None:
            p.grad.div_(max(1, count))
    return total, count, tokens


def max_rss_bytes() -> int | None:
    """The process's peak resident memory: since it started, or since `PeakMemory.start()`
    reset it (Linux). `ru_maxrss` is in KiB on Linux and in bytes on macOS; None on Windows,
    which has no `resource` module."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMemory:
    """The peak memory of a stretch of work: `start()`, work, `read()`."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def start(self) -> None:
        # Linux resets the process's high-water mark (and ru_maxrss) on "5"; elsewhere the
        # peak stays the process's whole life, which is still an upper bound.
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, int | None]:
        gpu = None
        if self.device == "cuda":
            import torch

            gpu = int(torch.cuda.max_memory_allocated())
        return {"peak_rss_bytes": max_rss_bytes(), "peak_gpu_bytes": gpu}


def peak_memory_text(metrics: dict[str, Any]) -> str | None:
    """The run's peak memory for people, from its metrics: "peak memory 3.1 GB" (with
    ", GPU 2.0 GB" on CUDA); None for a run recorded before convsim measured it."""
    rss, gpu = metrics.get("peak_rss_bytes"), metrics.get("peak_gpu_bytes")
    if not rss:
        return None
    return f"peak memory {format_bytes(rss)}" + (f", GPU {format_bytes(gpu)}" if gpu else "")


def format_bytes(n: float) -> str:
    """Bytes as "3.1 GB" or "340 MB", in the binary units `free` and `top` use (2**30)."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
