"""The preflight checklist: one item per run-record leaf, grouped as the seed groups them.

Each item says what it fixes and the sentence by which the claim shrinks when it
is missing. `ENVIRONMENT_FIELDS` (the determinism-relevant environment that replay
compares) is derived from the same table, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Group(StrEnum):
    BEFORE_REPLAY = "before replay"
    BEFORE_APPRAISAL = "before appraisal"
    BEFORE_ACTION = "before action"


@dataclass(frozen=True)
class Item:
    field: str
    group: Group
    label: str
    shrink: str  # how the claim shrinks when this item is missing
    environment: bool = False  # compared between the record and the replay environment


_R, _A, _X = Group.BEFORE_REPLAY, Group.BEFORE_APPRAISAL, Group.BEFORE_ACTION

ITEMS: tuple[Item, ...] = (
    Item("input_hash", _R, "input hash", "the input that produced the bytes is not pinned"),
    Item("prompt_template_hash", _R, "prompt template hash",
         "the prompt template is not pinned, so the exact model input is unknown"),
    Item("model.id", _R, "model id", "the model is not named"),
    Item("model.digest", _R, "model digest",
         "the model files are not pinned: any model with this name could have run"),
    Item("container.digest", _R, "container digest",
         "the container image is not pinned: the code around the model is unverified"),
    Item("runtime.name", _R, "runtime name", "the inference runtime is not named"),
    Item("runtime.version", _R, "runtime version",
         "the bytereplay runtime version is unknown", environment=True),
    Item("framework.torch", _R, "torch version",
         "the torch version is unknown, so kernel changes cannot be ruled out", environment=True),
    Item("framework.transformers", _R, "transformers version",
         "the transformers version is unknown", environment=True),
    Item("framework.python", _R, "python version", "the Python version is unknown",
         environment=True),
    Item("framework.gguf", _R, "gguf version",
         "the gguf version is unknown, so the dequantised GGUF weights cannot be pinned",
         environment=True),
    Item("gpu.arch", _R, "GPU architecture",
         "the GPU architecture is unknown, so hardware-dependent kernels cannot be matched",
         environment=True),
    Item("gpu.sku", _R, "GPU SKU", "the GPU model is unknown", environment=True),
    Item("gpu.sm_count", _R, "GPU SM count",
         "the SM count is unknown, so split-K and reduction order cannot be matched",
         environment=True),
    Item("gpu.driver", _R, "GPU driver", "the GPU driver version is unknown", environment=True),
    Item("toolkit.cuda", _R, "CUDA version", "the CUDA version is unknown", environment=True),
    Item("toolkit.cublas", _R, "cuBLAS version", "the cuBLAS version is unknown",
         environment=True),
    Item("toolkit.cudnn", _R, "cuDNN version", "the cuDNN version is unknown", environment=True),
    Item("cpu.model", _R, "CPU model", "the CPU model is unknown"),
    Item("cpu.capability", _R, "CPU capability (ATen ISA level)",
         "the CPU vector ISA is unknown, so CPU kernels cannot be matched", environment=True),
    Item("threads", _R, "thread count",
         "the thread count is unknown, so reduction order cannot be matched", environment=True),
    Item("dtype", _R, "dtype", "the numeric precision is unknown", environment=True),
    Item("determinism.deterministic_algorithms", _R, "deterministic algorithms flag",
         "deterministic algorithms are not shown to be on", environment=True),
    Item("determinism.cudnn_deterministic", _R, "cuDNN deterministic flag",
         "cuDNN determinism is not shown to be on", environment=True),
    Item("determinism.cudnn_benchmark", _R, "cuDNN benchmark flag",
         "cuDNN autotuning is not shown to be off", environment=True),
    Item("determinism.tf32", _R, "TF32 flag", "TF32 is not shown to be off", environment=True),
    Item("determinism.float32_matmul_precision", _R, "float32 matmul precision",
         "the float32 matmul precision is unknown", environment=True),
    Item("determinism.cublas_workspace_config", _R, "CUBLAS_WORKSPACE_CONFIG",
         "the cuBLAS workspace configuration is unknown", environment=True),
    Item("seed", _R, "seed", "the seed is unknown, so sampled output cannot be replayed"),
    Item("sampling.temperature", _R, "temperature", "the sampling temperature is unknown"),
    Item("sampling.top_k", _R, "top-k", "the top-k setting is unknown"),
    Item("sampling.top_p", _R, "top-p", "the top-p setting is unknown"),
    Item("stop.max_new_tokens", _R, "max new tokens", "the token limit is unknown"),
    Item("stop.stop_sequences", _R, "stop sequences", "the stop sequences are unknown"),
    Item("stop.eos", _R, "EOS rule", "whether decoding stops at EOS is unknown"),
    Item("output_hash", _A, "output hash",
         "the output bytes are not bound to the evidence: nothing about them is attested"),
    Item("output_token_ids", _A, "output token ids",
         "the token ids are not recorded, so a divergence cannot be located"),
    Item("verifier_ref", _A, "verifier reference", "the intended verifier is not named"),
    Item("challenge_window.issued_at", _A, "challenge issue time",
         "the challenge issue time is unknown, so freshness rests on the nonce alone"),
    Item("challenge_window.expires_at", _A, "challenge expiry",
         "the challenge expiry is unknown, so freshness rests on the nonce alone"),
    Item("operator", _A, "operator identity", "the operator who ran the attester is not named"),
)

# Named by the relying party at appraisal time, outside the record and the model output.
POLICY_ITEM = Item(
    "relying_party_policy", _X, "relying-party policy",
    "no appraisal policy is named, so no decision to act follows",
)

ITEM_BY_FIELD: dict[str, Item] = {item.field: item for item in ITEMS}
ENVIRONMENT_FIELDS: tuple[str, ...] = tuple(i.field for i in ITEMS if i.environment)
