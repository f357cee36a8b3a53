"""The trainer on a tiny random model and a tokenizer trained on the sample chat (CPU, seconds)."""

from __future__ import annotations

import json
import threading

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from convsim.core.chats.importers import parse_export  # noqa: E402
from convsim.core.chats.messages import StoredMessage  # noqa: E402
from convsim.core.config import UnknownSetting  # noqa: E402
from convsim.core.data.dataset import DatasetConfig, build  # noqa: E402
from convsim.core.data.packing import TokenizedExample, fold, pack, tokenize_examples  # noqa: E402
from convsim.core.training.runs import default_config  # noqa: E402
from convsim.core.training.trainer import TrainConfig, Trainer, TrainEvent, block_causal_mask  # noqa: E402
from convsim.core.workspace import SAMPLE_CHAT  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    (chat,) = parse_export(SAMPLE_CHAT)
    msgs = [
        StoredMessage(i, m.timestamp, m.sender, m.text, m.kind) for i, m in enumerate(chat.messages)
    ]
    return build(msgs, DatasetConfig(target="Sam", max_context=6))


@pytest.fixture(scope="module")
def tokenizer(dataset):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [ex.context + ex.target for ex in dataset.train]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_model(vocab: int, arch: str = "llama"):
    torch.manual_seed(0)
    kw = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    if arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(
            **kw, sliding_window=16, layer_types=["sliding_attention", "full_attention"]
        )
        return transformers.Gemma3ForCausalLM(cfg)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw))


def config(**kw) -> TrainConfig:
    base = dict(
        rank=4,
        alpha=8,
        steps=6,
        seq_len=128,
        batch_size=4,
        eval_every=3,
        checkpoint_every=2,
        samples=1,
        sample_tokens=4,
        learning_rate=5e-3,
        eval_rows=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_only_on_target_words(dataset, tokenizer) -> None:
    ex = dataset.train[5]
    (tok,) = tokenize_examples([ex], tokenizer, "target")
    text = tokenizer.decode(tok.ids[tok.loss_start :])
    # The words, then who writes next: another message of Sam's or someone else's turn.
    assert ex.next_tag and text.strip() == (ex.target[len("[Sam]") :] + ex.next_tag).strip()
    (all_,) = tokenize_examples([ex], tokenizer, "all")
    assert all_.loss_start == 1 and tok.ids == all_.ids


def test_packing_has_no_padding_and_keeps_every_target(dataset, tokenizer) -> None:
    toks = tokenize_examples(dataset.train, tokenizer)
    rows = pack(toks, 128, seed=0)
    assert sum(len(r.ids) for r in rows) == sum(min(len(t.ids), 128) for t in toks)
    assert all(len(r.ids) <= 128 for r in rows)
    full = sum(len(r.ids) for r in rows) / (128 * len(rows))
    assert full > 0.9  # rows are nearly full: little wasted compute
    assert sum(r.loss_tokens for r in rows) == sum(
        min(len(t.ids), 128) - 1 - max(0, t.loss_start - 1 - max(0, len(t.ids) - 128)) for t in toks
    ) or all(r.loss_tokens > 0 for r in rows)


def _targets(examples) -> set[tuple[int, ...]]:
    """Every target token with the tokens it is predicted from: (prefix..., token)."""
    return {t.ids[: i + 1] for t in examples for i in range(1, len(t.ids)) if t.carries_loss(i)}


def test_folding_keeps_every_target_after_the_same_tokens_in_fewer(dataset, tokenizer) -> None:
    toks = tokenize_examples(dataset.train, tokenizer)
    folded = fold(toks, 128)
    assert len(folded) < len(toks) and all(len(t.ids) <= 128 for t in folded if t.earlier)
    assert sum(len(t.ids) for t in folded) < 0.9 * sum(len(t.ids) for t in toks)
    assert _targets(folded) == _targets(toks)
    rows = pack(folded, 128, seed=0)  # a row marks the folded targets too
    assert sum(r.loss_tokens for r in rows) == sum(
        sum(t.carries_loss(i) for i in range(1, len(t.ids))) for t in folded
    )
    # By hand: (1 2 3) begins (1 2 3 4 5), so its target rides along; (1 2 9) does not.
    a, b, c = (
        TokenizedExample((1, 2, 3), 2),
        TokenizedExample((1, 2, 3, 4, 5), 4),
        TokenizedExample((1, 2, 9), 2),
    )
    assert fold([c, b, a], 8) == [TokenizedExample((1, 2, 3, 4, 5), 4, ((2, 3),)), c]
    assert pack(fold([a, b], 8), 8, seed=None)[0].loss == [0, 1, 0, 1, 0]
    assert fold([a, b], 4) == [a, b]  # the longer one would not fit a row: nothing folds
    assert fold([a, a], 8) == [a, a]  # a repeated example keeps its weight


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_packed_example_computes_as_if_alone(dataset, tokenizer, arch) -> None:
    model = tiny_model(len(tokenizer), arch).eval()
    toks = tokenize_examples(dataset.train[:6], tokenizer)
    rows = pack(toks, 256, seed=None)
    row = next(r for r in rows if len(r.lengths) > 1)
    n0 = row.lengths[0]
    second = torch.tensor([row.ids[n0 : n0 + row.lengths[1]]])
    ids = torch.tensor([row.ids])
    pos = torch.tensor([row.positions])
    mask = block_causal_mask([row], len(row.ids))
    masks = (
        {"full_attention": mask, "sliding_attention": block_causal_mask([row], len(row.ids), 16)}
        if arch == "gemma3"
        else mask
    )
    with torch.no_grad():
        alone = model(second).logits
        packed = model(ids, position_ids=pos, attention_mask=masks).logits[
            :, n0 : n0 + row.lengths[1]
        ]
    assert (alone - packed).abs().max().item() < 1e-4


def test_training_lowers_validation_loss_and_reports_events(dataset, tokenizer, tmp_path) -> None:
    events: list[TrainEvent] = []
    trainer = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        dataset.validation,
        config(steps=12, eval_every=6),
        tmp_path / "run",
        on_event=events.append,
    )
    result = trainer.run()
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 12
    evals = [e for e in events if e.kind == "eval"]
    assert len(evals) == 2 and evals[1].val_loss < evals[0].val_loss
    assert evals[0].samples and evals[0].samples[0].splitlines()[-1].startswith("[Sam]")
    steps = [e for e in events if e.kind == "step"]
    assert all(e.tokens_per_s > 0 and e.eta_s >= 0 for e in steps) and steps[-1].eta_s == 0
    assert (result.adapter_dir / "adapter_config.json").exists()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_loss"] == evals[-1].val_loss and metrics["steps"] == 12


def test_deterministic_with_a_seed(dataset, tokenizer, tmp_path) -> None:
    losses = []
    for name in ("a", "b"):
        events: list[TrainEvent] = []
        Trainer(
            tiny_model(len(tokenizer)),
            tokenizer,
            dataset.train,
            [],
            config(),
            tmp_path / name,
            on_event=events.append,
        ).run()
        losses.append([e.loss for e in events if e.kind == "step"])
    assert losses[0] == losses[1]


def test_cancel_then_resume_matches_an_uninterrupted_run(dataset, tokenizer, tmp_path) -> None:
    def losses(events):
        return [round(e.loss, 6) for e in events if e.kind == "step"]

    straight: list[TrainEvent] = []
    Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "s",
        on_event=straight.append,
    ).run()

    cancel = threading.Event()
    first: list[TrainEvent] = []

    def stop_after_three(e: TrainEvent) -> None:
        first.append(e)
        if e.kind == "step" and e.step == 3:
            cancel.set()

    r = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "r",
        on_event=stop_after_three,
        cancel=cancel,
    ).run()
    assert r.cancelled and r.steps == 3 and r.adapter_dir is None
    second: list[TrainEvent] = []
    r2 = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        [],
        config(),
        tmp_path / "r",
        on_event=second.append,
    ).run(resume=True)
    assert not r2.cancelled and r2.steps == 6
    assert losses(first) + losses(second) == losses(straight)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="wiggly").check()
    # User overrides are strict (default_config used to setattr any key, dropping typos into
    # the void); a saved run.json is read tolerantly, so a newer convsim's keys don't block it.
    with pytest.raises(UnknownSetting, match=r"unknown training setting: bogus \(valid: .*rank"):
        TrainConfig().with_overrides(bogus=1)
    with pytest.raises(ValueError, match=r"unknown training settings: bogus, lr \(valid: "):
        default_config(270_000_000, lr=1e-3, bogus=None)
    with pytest.raises(ValueError, match="schedule"):
        default_config(270_000_000, schedule="wiggly")
    loaded = TrainConfig.from_json({"bogus": 1, "rank": 4})
    assert loaded == TrainConfig(rank=4) and loaded.ignored_keys == ("bogus",)


def test_default_config_applies_given_overrides_and_skips_unset_ones() -> None:
    config = default_config(270_000_000, steps=7, rank=None, target_modules=["q_proj"])
    assert (config.steps, config.rank, config.target_modules) == (7, 16, ["q_proj"])
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_lora_targets_have_one_home() -> None:
    from convsim.convert.names import LORA_LINEARS, LORA_TARGETS

    assert TrainConfig().target_modules == list(LORA_TARGETS)
    assert all(targets == LORA_TARGETS for targets in LORA_LINEARS.values())


class LastWord:
    """A second objective, unrelated to next-message packing: make the model predict each
    example's final token from the tokens before it, one example per item, unpacked."""

    name = "last_word"

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, examples, setup, *, training):
        items = []
        for ex in examples:
            ids = setup.tokenizer(ex.context + ex.target)["input_ids"][-12:]
            if len(ids) > 2:
                items.append(tuple(ids))
        return items

    def loss(self, model, batch, setup):
        from convsim.core.training.objectives import LossSum

        self.calls += 1
        total = 0
        for ids in batch:
            logits = model(input_ids=torch.tensor([ids[:-1]], device=setup.device)).logits[0, -1]
            target = torch.tensor(ids[-1], device=setup.device)
            total = total + torch.nn.functional.cross_entropy(logits.float(), target)
        return LossSum(total, len(batch), sum(len(ids) for ids in batch))

    def samples(self, model, examples, setup):
        return []


def test_the_loop_runs_any_objective(dataset, tokenizer, tmp_path) -> None:
    objective = LastWord()
    events: list[TrainEvent] = []
    cfg = config(steps=8, eval_every=4, learning_rate=2e-2, warmup_steps=0)
    trainer = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        dataset.validation,
        cfg,
        tmp_path / "run",
        on_event=events.append,
        objective=objective,
    )
    assert all(isinstance(item, tuple) for item in trainer.train_rows)  # its items, not packs
    result = trainer.run()
    evals = [e.val_loss for e in events if e.kind == "eval"]
    assert len(evals) == 2 and evals[1] < evals[0]
    assert all(e.samples == () for e in events if e.kind == "eval")
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 8 and objective.calls > 8  # training and validation batches
    assert (result.adapter_dir / "adapter_config.json").exists()
    # Resuming works for it too: the loop owns checkpoints, whatever the objective.
    again = Trainer(
        tiny_model(len(tokenizer)), tokenizer, dataset.train, dataset.validation,
        config(steps=10, eval_every=4, learning_rate=2e-2, warmup_steps=0),
        tmp_path / "run", objective=LastWord(),
    ).run(resume=True)  # fmt: skip
    assert again.steps == 10 and again.metrics["history"]["loss"][0][0] == 1


def test_continuing_an_adapter_starts_where_it_ended(dataset, tokenizer, tmp_path) -> None:
    first = Trainer(
        tiny_model(len(tokenizer)), tokenizer, dataset.train, dataset.validation,
        config(steps=12, eval_every=0, learning_rate=2e-2, warmup_steps=0), tmp_path / "first",
    ).run()  # fmt: skip
    ended = first.metrics["val_loss"]
    fresh = Trainer(
        tiny_model(len(tokenizer)), tokenizer, dataset.train, dataset.validation,
        config(steps=2, eval_every=0), tmp_path / "fresh",
    ).validation_loss()  # fmt: skip
    events: list[TrainEvent] = []
    continued = Trainer(
        tiny_model(len(tokenizer)),
        tokenizer,
        dataset.train,
        dataset.validation,
        config(steps=4, eval_every=1, init_adapter=str(first.adapter_dir)),
        tmp_path / "continued",
        on_event=events.append,
    )
    assert continued.validation_loss() == pytest.approx(ended, abs=1e-5)
    assert fresh - ended > 0.05  # the base model is clearly worse: the adapter was loaded
    assert continued._lr_lambda(0) < continued._lr_lambda(3)  # warmed up again
    continued.run()
    evals = [e.val_loss for e in events if e.kind == "eval"]
    assert len(evals) == 4 and all(abs(v - ended) < fresh - ended for v in evals)


def test_an_adapter_of_another_shape_is_refused(dataset, tokenizer, tmp_path) -> None:
    first = Trainer(
        tiny_model(len(tokenizer)), tokenizer, dataset.train, [], config(steps=1),
        tmp_path / "first",
    ).run()  # fmt: skip
    with pytest.raises(ValueError, match=r"adapter_config.json: r is 4 but this run trains 8"):
        Trainer(
            tiny_model(len(tokenizer)), tokenizer, dataset.train, [],
            config(rank=8, init_adapter=str(first.adapter_dir)), tmp_path / "other",
        )  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"nowhere/adapter_config.json: missing"):
        Trainer(
            tiny_model(len(tokenizer)), tokenizer, dataset.train, [],
            config(init_adapter=str(tmp_path / "nowhere")), tmp_path / "other",
        )  # fmt: skip


def test_a_dataset_folder_in_the_old_format_still_trains(dataset, tokenizer, tmp_path) -> None:
    from dataclasses import replace

    from test_dataset_files import write_v1

    from convsim.core.data.dataset_files import FORMAT_VERSION, read_dataset, write_dataset

    write_v1(tmp_path / "v1", dataset)
    (tmp_path / "new").mkdir()
    # The old format knew no next tags: the same examples without them train the same.
    train, validation = ([replace(e, next_tag="") for e in split]
                         for split in (dataset.train, dataset.validation))  # fmt: skip
    untagged = replace(dataset, train=train, validation=validation)
    write_dataset(tmp_path / "new", untagged)
    losses = []
    for version in ("v1", "new"):
        files = read_dataset(tmp_path / version)
        events: list[TrainEvent] = []
        Trainer(
            tiny_model(len(tokenizer)), tokenizer, files.train, files.validation,
            config(steps=3, eval_every=0), tmp_path / f"run-{version}", on_event=events.append,
        ).run()  # fmt: skip
        losses.append([e.loss for e in events if e.kind in ("step", "eval")])
    assert files.version == FORMAT_VERSION and len(losses[0]) == 4
    assert losses[0] == losses[1]  # the same texts train the same, whatever the format


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_lm_head_loss_equals_plain_cross_entropy(softcap, bias) -> None:
    """`memory.lm_head_loss` (logits a chunk at a time, gradients worked out in the forward
    pass) gives F.cross_entropy's loss and gradients, with and without Gemma's softcapping."""
    from convsim.core.training.memory import lm_head_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    hidden = torch.randn(11, 16, requires_grad=True)
    targets = torch.randint(0, 50, (11,))

    def plain():
        logits = head(hidden).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")

    expected = plain()
    want = torch.autograd.grad(expected * 0.7, [hidden, *head.parameters()])
    loss = lm_head_loss(hidden, head, targets, softcap, chunk=4)  # 3 chunks, the last short
    got = torch.autograd.grad(loss * 0.7, [hidden, *head.parameters()])
    assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and torch.allclose(g, w, rtol=1e-5, atol=1e-6)
    # A frozen head (LoRA): the hidden states' gradient only. Without grad mode: the loss.
    head.requires_grad_(False)
    (g_hidden,) = torch.autograd.grad(lm_head_loss(hidden, head, targets, softcap, 4), hidden)
    assert torch.allclose(g_hidden, torch.autograd.grad(plain(), hidden)[0], atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(lm_head_loss(hidden, head, targets, softcap, 4), expected)

    # Per row (one call for many segments): each row's loss, and gradients row by row.
    def plain_rows():
        logits = head(hidden).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")

    rows = lm_head_loss(hidden, head, targets, softcap, 4, per_row=True)
    assert rows.shape == (11,) and torch.allclose(rows, plain_rows(), rtol=1e-6, atol=1e-5)
    weights = torch.rand(11)
    (got_rows,) = torch.autograd.grad((rows * weights).sum(), hidden)
    (want_rows,) = torch.autograd.grad((plain_rows() * weights).sum(), hidden)
    assert torch.allclose(got_rows, want_rows, atol=1e-6)
    head.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen head"):
        lm_head_loss(hidden, head, targets, softcap, 4, per_row=True)


def test_next_message_loss_is_the_full_logits_cross_entropy(dataset, tokenizer) -> None:
    """The objective's loss (chunked LM head, softcapped for gemma3) is the cross-entropy of
    the model's own logits at the target positions."""
    from peft import LoraConfig, get_peft_model

    from convsim.core.training.objectives import NextMessage, Setup

    model = tiny_model(len(tokenizer), "gemma3")
    model.config.final_logit_softcapping = 5.0
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    setup = Setup(tokenizer, config(seq_len=64), "cpu", torch.float32)
    rows = NextMessage().prepare(dataset.train[:8], setup, training=False)[:2]
    summed = NextMessage().loss(peft_model, rows, setup)
    expected = 0.0
    for row in rows:
        logits = peft_model(
            input_ids=torch.tensor([row.ids]),
            position_ids=torch.tensor([row.positions]),
            attention_mask={
                "full_attention": block_causal_mask([row], len(row.ids)),
                "sliding_attention": block_causal_mask([row], len(row.ids), 16),
            },
        ).logits[0]  # softcapped by the model itself
        sel = torch.tensor(row.loss, dtype=torch.bool)
        targets = torch.roll(torch.tensor(row.ids), -1)[sel]
        expected = expected + torch.nn.functional.cross_entropy(
            logits[sel], targets, reduction="sum"
        )
    assert summed.count == sum(row.loss_tokens for row in rows)
    assert torch.allclose(summed.total, expected, rtol=1e-5)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    got = torch.autograd.grad(summed.total, params)
    want = torch.autograd.grad(expected, params)
    assert all(torch.allclose(g, w, rtol=1e-4, atol=1e-6) for g, w in zip(got, want, strict=True))


def test_micro_batches_make_the_same_steps_and_peak_memory_is_recorded(
    dataset, tokenizer, tmp_path
) -> None:
    """A step run one row at a time (the CPU default, to bound memory) is the step run on the
    whole batch at once; the run records its peak memory. On the CPU in float32, where the two
    must agree to rounding (a GPU trains in bf16: its two runs differ by more)."""
    results = []
    for micro in (1, 4):
        events: list[TrainEvent] = []
        result = Trainer(
            tiny_model(len(tokenizer)), tokenizer, dataset.train, [],
            config(steps=3, dropout=0.0, micro_batch_size=micro, checkpoint_every=0,
                   device="cpu", precision="fp32"),
            tmp_path / f"micro-{micro}", on_event=events.append,
        ).run()  # fmt: skip
        results.append((result, [e.loss for e in events if e.kind == "step"]))
    (one, losses_one), (four, losses_four) = results
    assert losses_one == pytest.approx(losses_four, rel=1e-5)
    from safetensors.torch import load_file

    weights = [load_file(r.adapter_dir / "adapter_model.safetensors") for r in (one, four)]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])
    metrics = json.loads((tmp_path / "micro-1" / "metrics.json").read_text())
    assert 50 * 2**20 < metrics["peak_rss_bytes"] < 2**40 and metrics["peak_gpu_bytes"] is None
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainConfig(micro_batch_size=0)


def test_bf16_training_keeps_the_lora_in_fp32_and_learns_like_fp32(
    dataset, tokenizer, tmp_path
) -> None:
    """On a CPU with bf16 instructions training runs in bf16 (`devices.choose_device`): the
    frozen base in bf16 under autocast, the LoRA and its optimiser in fp32. The losses are
    those of the fp32 run to bf16 rounding, and the saved adapter is fp32."""
    from safetensors.torch import load_file

    runs = {}
    for precision in ("fp32", "bf16"):
        events: list[TrainEvent] = []
        trainer = Trainer(
            tiny_model(len(tokenizer)), tokenizer, dataset.train, dataset.validation,
            config(steps=8, eval_every=4, dropout=0.0, precision=precision, device="cpu"),
            tmp_path / precision, on_event=events.append,
        )  # fmt: skip
        lora = {p.dtype for n, p in trainer.model.named_parameters() if "lora_" in n}
        frozen = {p.dtype for n, p in trainer.model.named_parameters() if "lora_" not in n}
        result = trainer.run()
        weights = load_file(result.adapter_dir / "adapter_model.safetensors")
        runs[precision] = (events, lora, frozen, {w.dtype for w in weights.values()})
    events, lora, frozen, saved = runs["bf16"]
    assert "packed rows on cpu (bf16);" in events[0].message
    assert "packed rows on cpu;" in runs["fp32"][0][0].message
    assert lora == saved == {torch.float32} and frozen == {torch.bfloat16}
    assert runs["fp32"][2] == {torch.float32}
    losses = {k: [e.loss for e in v[0] if e.kind == "step"] for k, v in runs.items()}
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    assert losses["bf16"] != losses["fp32"]  # it did run in bf16
    vals = [e.val_loss for e in events if e.kind == "eval"]
    assert vals[1] < vals[0]


def test_cpu_training_precision_follows_the_cpu(monkeypatch) -> None:
    from convsim.core.system import devices

    assert devices.bf16_in_cpuinfo("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16 avx512f\n")
    assert devices.bf16_in_cpuinfo("flags : fpu amx_bf16 amx_tile\n")
    assert not devices.bf16_in_cpuinfo("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert not devices.bf16_in_cpuinfo("processor : 0\nFeatures : fp asimd bf16\n")  # ARM
    monkeypatch.setattr(devices, "cpu_bf16", lambda: True)
    assert devices.choose_device("cpu") == ("cpu", torch.bfloat16)
    assert devices.choose_device("cpu", "fp32") == ("cpu", torch.float32)
    monkeypatch.setattr(devices, "cpu_bf16", lambda: False)
    assert devices.choose_device("cpu") == ("cpu", torch.float32)
    assert devices.choose_device("cpu", "bf16") == ("cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        devices.choose_device("cpu", "fp8")
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16, not 'fp16'"):
        TrainConfig(precision="fp16")


def test_the_default_length_comes_from_the_data_size() -> None:
    from convsim.core.training import recipe
    from convsim.core.training.recipe import plan_steps

    # A small chat is passed over until the run has MIN_STEPS steps, at most MAX_PASSES times.
    small = plan_steps(60, 4, 512, "cpu")  # 15 steps a pass
    assert small.steps == recipe.MIN_STEPS and small.passes == pytest.approx(40 / 15)
    assert "small chat" in small.why
    tiny = plan_steps(20, 4, 512, "cpu")  # 5 steps a pass
    assert tiny.steps == 15 and tiny.passes == recipe.MAX_PASSES
    # A larger one gets two passes on a GPU; on the CPU it stops at the token budget, which
    # counts tokens, so shorter rows give more steps.
    assert plan_steps(410, 4, 512, "cuda").steps == 2 * 103
    assert plan_steps(160, 4, 512, "cuda").why == "larger chat: 2 passes"
    capped = plan_steps(410, 4, 512, "cpu")
    assert capped.steps == recipe.CPU_TOKEN_BUDGET // 2048 < 103 and "budget" in capped.why
    assert plan_steps(410, 4, 256, "cpu").steps == recipe.CPU_TOKEN_BUDGET // 1024
    # A CPU that trains in bf16 is faster: its budget is larger, and still below two passes.
    fast = plan_steps(410, 4, 512, "cpu", bf16=True)
    assert capped.steps < fast.steps == recipe.CPU_BF16_TOKEN_BUDGET // 2048 < 2 * 103
    assert f"{recipe.CPU_BF16_TOKEN_BUDGET:,} tokens" in fast.why
    assert plan_steps(410, 4, 512, "cuda", bf16=True).steps == 2 * 103
    # What the user sets wins.
    assert plan_steps(410, 4, 512, "cpu", steps=7).steps == 7
    assert plan_steps(410, 4, 512, "cpu", epochs=2.0).steps == 206
    with pytest.raises(ValueError, match="epochs must be > 0"):
        TrainConfig(epochs=0)


def test_a_run_of_the_default_length_keeps_it_when_resumed(
    dataset, tokenizer, tmp_path, monkeypatch
) -> None:
    from convsim.core.training import recipe

    cancel = threading.Event()
    events: list[TrainEvent] = []

    def stop_after_two(e: TrainEvent) -> None:
        events.append(e)
        if e.kind == "step" and e.step == 2:
            cancel.set()

    settings = config(steps=None, seq_len=512, eval_every=0, checkpoint_every=0)
    first = Trainer(tiny_model(len(tokenizer)), tokenizer, dataset.train, [], settings,
                    tmp_path / "r", on_event=stop_after_two, cancel=cancel)  # fmt: skip
    per_pass = -(-len(first.train_rows) // 4)
    assert per_pass < recipe.MIN_STEPS  # the sample chat is a small chat
    planned = min(recipe.MIN_STEPS, round(recipe.MAX_PASSES * per_pass))
    assert first.total_steps == planned and first.run().cancelled
    assert f"{planned} steps (small chat" in events[0].message
    # The recipe changes (a new version of convsim, another device): the run keeps its length.
    monkeypatch.setattr(recipe, "MIN_STEPS", 2)
    second = Trainer(tiny_model(len(tokenizer)), tokenizer, dataset.train, [], settings,
                     tmp_path / "r")  # fmt: skip
    assert second.total_steps == round(recipe.LARGE_PASSES * per_pass)
    result = second.run(resume=True)
    assert not result.cancelled and result.steps == planned
