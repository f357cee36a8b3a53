"""The torch side of `steering.py`: vectors made as llama.cpp's cvector-generator makes them,
and the parity of a convsim vector between torch (a forward hook) and llama.cpp."""

from __future__ import annotations

from typing import Any

import numpy as np


def cvgen_vector(ws: Any, record: Any, axis: str) -> np.ndarray:
    """cvector-generator's recipe on the same training pairs: per block, the first principal
    direction of the positive-minus-negative hidden states at every position, unit length,
    every block but 0; sign turned to agree with the mean difference."""
    import torch

    from convsim.core.steering import build, pairs
    from convsim.core.steering.axes import BUILT_IN
    from convsim.core.steering.directions import decoder_layers

    t = build.target(ws, record.id)
    early, _ = build.split_contexts(t)
    chosen = pairs.contrast_pairs(early, BUILT_IN[axis], pairs.MIN_PAIRS)
    model, tok = build.load_persona(ws, t)
    layers = decoder_layers(model)
    captured: list[Any] = [None] * len(layers)

    def hook(i: int) -> Any:
        def keep(_m: Any, _i: Any, out: Any) -> None:
            captured[i] = (out[0] if isinstance(out, tuple) else out)[0].float()

        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    diffs: list[list[np.ndarray]] = [[] for _ in layers]
    try:
        for p in chosen:
            states = []
            for reply in (p.positive, p.negative):
                with torch.no_grad():
                    model.get_decoder()(input_ids=torch.tensor([tok(p.context + reply).input_ids]))
                states.append([c.numpy() for c in captured])
            for b in range(len(layers)):
                n = min(len(states[0][b]), len(states[1][b]))
                diffs[b].append(states[0][b][:n] - states[1][b][:n])
    finally:
        for h in handles:
            h.remove()
    rows = np.zeros((len(layers), captured[0].shape[-1]), dtype=np.float32)
    for b in range(1, len(layers)):
        d = np.concatenate(diffs[b])
        _, _, vt = np.linalg.svd(d, full_matrices=False)
        unit = vt[0] / np.linalg.norm(vt[0])
        rows[b] = unit if float(d.mean(axis=0) @ unit) >= 0 else -unit
    return rows


def parity(ws: Any, record: Any, llm: Any, v: Any, contexts: list[Any]) -> dict[str, Any]:
    """The same vector (slider +1) in torch (a forward hook adding it to each band block's
    output from the reply's tag on) and on llama.cpp (`steer_from`): correlation of the next
    token's logits; unsteered, the same comparison is the baseline (Q4_K_M on llama.cpp vs its
    dequantised weights in torch)."""
    import torch

    from convsim.core.steering import build
    from convsim.core.steering.directions import decoder_layers

    model, _ = build.load_persona(ws, build.target(ws, record.id))
    layers = decoder_layers(model)
    strength = v.calibration.strength(1.0)
    add: dict[str, Any] = {"from": 0, "on": False}

    def hook(b: int) -> Any:
        def steer(_m: Any, _i: Any, out: Any) -> Any:
            if not add["on"] or b >= len(v.rows) or not np.any(v.rows[b]):
                return out
            h = out[0] if isinstance(out, tuple) else out
            h = h.clone()
            h[:, add["from"] :] += torch.tensor(strength * v.rows[b], dtype=h.dtype)
            return (h, *out[1:]) if isinstance(out, tuple) else h

        return steer

    handles = [layer.register_forward_hook(hook(b)) for b, layer in enumerate(layers)]
    result: dict[str, list[float]] = {"steered": [], "unsteered": []}
    try:
        for c in contexts:
            ids = llm.tokenize(c.prompt)
            steer_from = len(llm.tokenize(c.turns))
            for on in (False, True):
                add.update({"from": steer_from, "on": on})
                if on:
                    llm.set_control_vector(strength * v.rows[1:], v.band[0], v.band[1])
                else:
                    llm.set_control_vector(None)
                ours = llm.next_logits(ids, steer_from=steer_from)
                with torch.no_grad():
                    theirs = model(torch.tensor([ids])).logits[0, -1].float().numpy()
                result["steered" if on else "unsteered"].append(
                    float(np.corrcoef(ours, theirs)[0, 1])
                )
    finally:
        for h in handles:
            h.remove()
        llm.set_control_vector(None)
    return {k: float(np.min(x)) for k, x in result.items()} | {"contexts": len(contexts)}
