"""Chat requests: messages rendered by the model's own chat template.

A chat request travels through the engine, the Evidence and replay as an ordinary
request (`input`, `template`) with two conventions, so the request claim and the
record keep their shape:

- `input` is the CANONICAL MESSAGES: the JSON array of `{"role", "content"}` objects
  in RFC 8785 (JCS) form. `input_hash` is its SHA-256, so the same conversation
  hashes the same whatever key order or spacing the client sent.
- `template` is the chat template's Jinja SOURCE (the model's own, or `FALLBACK_TEMPLATE`
  for a model without one). `prompt_template_hash` is its SHA-256. A template without
  the `{input}` mark is a chat template; one with it is the plain text template.

The engine renders `template` with the messages and `add_generation_prompt=True`, and
tokenises the result without adding special tokens (the template writes them). It
renders only ITS OWN model's template: a request naming another template is refused as
a setup change (`TemplateMismatch`), never rendered. So replay re-renders the recorded
messages with the verifier's copy of the model's template and gets the same prompt
tokens, or says that the template differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from attester.decode import RequestError
from bytereplay.encoding import sha256_tag

ROLES = ("system", "user", "assistant", "developer", "tool")
MAX_MESSAGES = 256
INPUT_MARK = "{input}"

# ChatML, for models whose tokenizer has no chat template (the fixture model).
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateMismatch(RequestError):
    """The request's chat template is not the loaded model's: a setup change."""

    problem = "template-mismatch"


def is_chat(template: str) -> bool:
    """A template without the `{input}` mark is a chat template (see the module docstring)."""
    return INPUT_MARK not in template


def model_template(tokenizer: Any) -> str:
    """The tokenizer's own chat template source, or `FALLBACK_TEMPLATE`."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    return own if isinstance(own, str) and own else FALLBACK_TEMPLATE


def check_messages(messages: Any, where: str = "messages") -> list[dict[str, str]]:
    """`[{"role", "content"}, ...]` with text content; RequestError naming the entry."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise RequestError(f"{where}: expected a non-empty array of {{role, content}} objects")
    if len(messages) > MAX_MESSAGES:
        raise RequestError(f"{where}: at most {MAX_MESSAGES} messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise RequestError(f"{where}[{i}]: expected an object with role and content")
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            raise RequestError(f"{where}[{i}].{extra[0]}: not supported (only role and content)")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RequestError(f"{where}[{i}].role: expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise RequestError(f"{where}[{i}].content: expected text")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(f"{where}[{i}].content: not valid Unicode text") from None
        out.append({"role": str(role), "content": content})
    return out


def canonical_messages(messages: Any) -> str:
    """The messages as canonical JSON text (RFC 8785), the chat request's `input`."""
    return rfc8785.dumps(check_messages(messages)).decode("utf-8")


def parse_canonical(text: str) -> list[dict[str, str]]:
    """The messages of a chat `input`; it must be canonical already (so that the input
    hash names one conversation, not one of its spellings)."""
    import json

    try:
        messages = json.loads(text)
    except ValueError:
        raise RequestError("a chat request's input must be a JSON array of messages") from None
    checked = check_messages(messages, "input")
    if rfc8785.dumps(checked).decode("utf-8") != text:
        raise RequestError("a chat request's input must be canonical JSON (RFC 8785)")
    return checked


def render(tokenizer: Any, messages: list[dict[str, str]], template: str) -> str:
    """The prompt text: `template` applied to `messages` with the generation prompt."""
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
    except Exception as exc:  # jinja2 errors: a template that raises on these messages
        raise RequestError(f"the chat template cannot render these messages: {exc}") from None
    if not isinstance(text, str):
        raise RequestError("the chat template did not render text")
    return text


def template_hash(template: str) -> str:
    return sha256_tag(template.encode("utf-8"))
