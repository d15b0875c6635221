#!/usr/bin/env python3
"""Build the small fixture causal LM shipped under fixtures/model/.

Everything is made offline and deterministically:

- the tokenizer is a byte-level BPE trained with the `tokenizers` library on the text
  below (no download);
- the weights are drawn from numpy's legacy `RandomState` (a frozen stream) with a
  fixed seed, so they do not depend on torch's or transformers' init code;
- the files are written with `save_pretrained` (safetensors) and then checked by
  loading them back with `AutoModelForCausalLM` / `AutoTokenizer` and
  `local_files_only=True`.

The model is Llama-style (RMSNorm, RoPE, SwiGLU), about 2 million parameters, float32,
about 8 MB of safetensors. Its weights are random: it writes gibberish, but the
gibberish depends on the prompt, which is all the determinism tests need.

    python scripts/make_fixture_model.py            # (re)write fixtures/model/
    python scripts/make_fixture_model.py --check    # rebuild in a temp dir, compare
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "fixtures" / "model"
SEED = 20240611
VOCAB_SIZE = 512
SPECIAL = "<|endoftext|>"
MODEL_ID = "bytereplay/fixture-llama-2m"
VERSION_STAMP = "transformers_version"

# Training text for the tokenizer. Any fixed text works; this one also gives the
# merges a few words the demos use.
CORPUS = """\
Replay the bytes before you trust the answer. A relying application decides, with
evidence, how much to trust one model output. The attester runs the model under the
determinism controls and records everything that fixes the output bytes: the input,
the prompt template, the model digest, the container digest, the runtime version, the
framework versions, the GPU architecture and driver, the toolkit, the CPU capability,
the thread count, the data type, the seed, the sampling settings and the stop rules.
The verifier issues a nonce, checks the quote and the signatures, compares reference
values and replays the run. When the bytes match under the same setup the evidence
affirms the executables; when they differ under the same setup that is a
contradiction; when the setup differs the result is inconclusive, and the difference
is named field by field.
Byte agreement never says the answer is true, safe, fair, current or fit for use.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
Once upon a time there was a small model that wrote the same words every time it was
asked the same question, and the people who relied on it could check that it did.
The weather today is cloudy with a chance of rain in the afternoon and a light wind
from the west. Tomorrow will be sunny and warm, a good day for a walk in the park.
Summarize the following text in one sentence. Translate the following sentence into
French. Answer the question: what is the capital of France? Paris is the capital.
Write a short poem about the sea. The sea is wide and grey and the waves are slow.
def add(a, b): return a + b. for i in range(10): print(i). if x > 0: y = x * 2.
{"input": "hello", "output": "world", "seed": 42, "temperature": 0.7, "top_p": 0.9}
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14159 2.71828 42.
Accents and symbols: café, naïve, façade, déjà vu, Grüße, señor, € £ ¥ © ® ™ ° ± × ÷.
"""


def build_tokenizer(out: Path) -> int:
    """Train the byte-level BPE and save it (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The corpus repeated a few times, line by line: same words, fixed order.
    lines = CORPUS.splitlines() * 4
    tok.train_from_iterator(lines, trainer=trainer)
    bos_id = tok.token_to_id(SPECIAL)
    # Prepend the BOS token to every encoded text, so an empty prompt still has one
    # token to condition on.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, bos_id)]
    )
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=SPECIAL,
        eos_token=SPECIAL,
        unk_token=None,
        pad_token=SPECIAL,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out))
    # transformers 5 writes its own class name ("TokenizersBackend"); the classic
    # name loads under transformers 4 as well as 5.
    _patch_json(out / "tokenizer_config.json", tokenizer_class="PreTrainedTokenizerFast")
    return int(tok.get_vocab_size())


def _patch_json(path: Path, *drop: str, **items: object) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(items)
    for key in drop:
        data.pop(key, None)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_weights(vocab_size: int, bos_id: int) -> tuple[object, dict[str, object]]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config_kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        pad_token_id=bos_id,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
    )
    config = LlamaConfig(**config_kwargs)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    rng = np.random.RandomState(SEED)
    state: dict[str, object] = {}
    for name, param in sorted(model.state_dict().items()):
        shape = tuple(param.shape)
        if name.endswith("norm.weight"):
            arr = np.ones(shape, dtype=np.float32)
        elif len(shape) == 2:
            # Fan-in scaled init: std = gain / sqrt(fan_in). A gain above 1 on the
            # embeddings and the head gives peaked, prompt-dependent logits instead of
            # a near-uniform distribution with one constant argmax.
            fan_in = shape[1]
            gain = 1.0
            if "embed_tokens" in name:
                gain = 1.0 * np.sqrt(fan_in)
            elif "lm_head" in name:
                gain = 3.0
            arr = (rng.standard_normal(shape) * (gain / np.sqrt(fan_in))).astype(np.float32)
        else:
            raise SystemExit(f"unexpected parameter {name} {shape}")
        state[name] = torch.from_numpy(arr)
    model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=True)
    model.eval()  # type: ignore[no-untyped-call]
    return model, state


def build(out: Path) -> None:
    from transformers import GenerationConfig

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vocab_size = build_tokenizer(out)
    tok_json = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    bos_id = next(t["id"] for t in tok_json["added_tokens"] if t["content"] == SPECIAL)
    model, _ = build_weights(vocab_size, bos_id)
    model.save_pretrained(str(out), safe_serialization=True)  # type: ignore[attr-defined]
    (out / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    # The engine reads the model id from here (see attester.engine.model_id_for).
    # transformers stamps its own version into both JSON files; dropped, so that the
    # digest does not move with the installed release (`--check` on a fresh clone).
    _patch_json(out / "config.json", VERSION_STAMP, _name_or_path=MODEL_ID)
    GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=bos_id, do_sample=False
    ).save_pretrained(str(out))
    _patch_json(out / "generation_config.json", VERSION_STAMP)
    (out / "README.md").write_text(
        f"# {MODEL_ID}\n\n"
        "Random-weight Llama-style causal LM (about 2M parameters, float32) and a\n"
        "byte-level BPE tokenizer, made offline by `scripts/make_fixture_model.py`\n"
        f"(numpy RandomState seed {SEED}). For tests and demos of bytereplay only:\n"
        "it writes gibberish, deterministically.\n",
        encoding="utf-8",
    )


def check_loads(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True, dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    ids = tok("Replay the bytes", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    size = (out / "model.safetensors").stat().st_size
    print(f"parameters: {n:,}; model.safetensors: {size / 1e6:.2f} MB; vocab: {len(tok)}")
    print(f"prompt ids: {ids.tolist()}; next-token argmax: {int(logits[0, -1].argmax())}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild in a temporary directory and compare its digest with --out",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    from attester.model_digest import model_digest

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "model"
            build(fresh)
            want, got = model_digest(args.out), model_digest(fresh)
        print(f"committed: {want}\nrebuilt:   {got}")
        return 0 if want == got else 1
    build(args.out)
    check_loads(args.out)
    print(f"digest: {model_digest(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
