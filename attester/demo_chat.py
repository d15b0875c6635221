"""The demo's question: asked through the OpenAI-compatible API with the official client.

`ask` is what `bytereplay demo` (verifier/demo.py) calls for its step 2: a real question
to the attester's /v1/chat/completions with the `openai` client, the verifier's nonce
and challenge window in `extra_body`, greedy decoding. It answers in the shape of a
/v1/infer answer (`output`, `output_hash`, `evidence`, `evidence_format`), so the rest
of the demo (verify, appraise, tamper) is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

QUESTION = "What is the capital of France? Answer in one sentence."
MAX_TOKENS = 32


def ask(attester_url: str, model: str, challenge: dict[str, Any],
        say: Callable[[str], None] = print, question: str = QUESTION) -> dict[str, Any]:
    """Ask `question` over the OpenAI API; the answer as /v1/infer would give it."""
    import openai

    client = openai.OpenAI(base_url=f"{attester_url}/v1", api_key="not-needed", max_retries=0,
                           timeout=600)
    say(f"question (OpenAI API, model {model}): {question}")
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}],
        temperature=0, seed=0, max_tokens=MAX_TOKENS,
        extra_body={"nonce": challenge["nonce"],
                    "challenge_window": {"issued_at": challenge["issued_at"],
                                         "expires_at": challenge["expires_at"]}})
    content = completion.choices[0].message.content or ""
    usage = completion.usage
    say(f"answer: {content}")
    if usage is not None:
        say(f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
            f"finish_reason {completion.choices[0].finish_reason}")
    attestation: dict[str, Any] = (completion.model_extra or {})["attestation"]
    return {"output": content, "output_hash": attestation["output_hash"],
            "evidence": attestation["evidence"], "evidence_format": attestation["evidence_format"]}
