"""LLM backends behind one interface: a local transformers model (a directory, GGUF
included) and any OpenAI-compatible HTTP endpoint (vLLM, Ollama, llama.cpp server).

Build one from a spec string: `transformers:PATH` (a model directory, a directory holding a
.gguf file, or the .gguf file) or `openai:URL[#MODEL]` (URL up to and including `/v1`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from vad.registry import Registry
from vad.config import validated
from vad.config.reasoning import LLMConfig
from vad.errors import VadError

log = logging.getLogger(__name__)


class LLM(ABC):
    """Answers one user message (chat-style); deterministic where the backend allows."""

    @abstractmethod
    def generate(self, prompt: str, max_new_tokens: int = 256) -> str: ...

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        answer_prefix: str = "") -> dict[str, float] | None:
        """Log-probability of each option's first token as the next token of the answer
        (after `answer_prefix`); None when the backend cannot tell."""
        return None


def first_token_logprobs(candidates: dict[str, float], options: Sequence[str]
                         ) -> dict[str, float] | None:
    """{option: best log-probability among tokens that start it}, from {token: logprob};
    None unless every option is found ("Anom" counts for "Anomaly", " normal" for "Normal")."""
    found = {}
    for option in options:
        scores = [lp for token, lp in candidates.items()
                  if len(t := token.strip().lower()) >= 2 and option.lower().startswith(t)]
        if not scores:
            return None
        found[option] = max(scores)
    return found


LLMS: Registry[LLM] = Registry("LLM backend")


def build_llm(config: LLMConfig | str, device: str = "cpu") -> LLM:
    """The backend of a `reasoning.llm` section (or of its spec string)."""
    if isinstance(config, str):
        config = validated(LLMConfig, {"spec": config}, "LLM")
    name, _, target = config.spec.partition(":")
    return LLMS.get(name)(target, config, device)


def _gguf_cache_dir(gguf: Path, root: str) -> Path:
    stat = gguf.stat()
    digest = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return Path(root).expanduser() / f"{gguf.stem}-{digest.hexdigest()[:12]}"


def _find_gguf(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    files = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(files) > 1:
        raise VadError(f"{path}: several .gguf files; name the one to use")
    return files[0] if files else None


def _shared_length(a, b) -> int:
    """Length of the common prefix of two 1-d id tensors."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


@LLMS.register("transformers")
class TransformersLLM(LLM):
    """A causal LM from a local directory. GGUF weights are de-quantized once and cached
    as a regular checkpoint (the first conversion is slow, later loads are fast)."""

    def __init__(self, target: str | Path, config: LLMConfig, device: str = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(target)
        if not path.exists():
            raise VadError(f"{path}: no such model directory or .gguf file")
        gguf = _find_gguf(path)
        if gguf is not None:
            path = self._converted(gguf, config.gguf_cache)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise VadError(f"{path}: cannot load a causal language model ({exc})") from None
        self.device = device
        # option_logprobs: KV cache of the last prompt prefix (the rules, shared by frames)
        self._cache, self._cache_ids = None, None
        self.min_shared_prefix = 16

    @staticmethod
    def _converted(gguf: Path, root: str) -> Path:
        cache = _gguf_cache_dir(gguf, root)
        if (cache / "config.json").is_file():
            return cache
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        log.warning("converting %s once to %s (slow)", gguf, cache)
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, quantization_config=GgufConfig(dequantize=True), **kwargs)
        tmp = cache.with_name(cache.name + ".tmp")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(cache)
        return cache

    def _inputs(self, prompt: str, answer_prefix: str = "") -> dict:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True,
                tokenize=False)
        else:
            text = prompt + "\n"
        inputs = self.tokenizer(text + answer_prefix, return_tensors="pt",
                                add_special_tokens=not self.tokenizer.chat_template)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        answer_prefix: str = "") -> dict[str, float] | None:
        """One forward pass; the prompt's longest prefix seen before is served from a KV
        cache (the rules, identical for every frame, are computed once)."""
        import torch

        ids = self._inputs(prompt, answer_prefix)["input_ids"]
        with torch.inference_mode():
            logits = self._next_token_logits(ids)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        top = torch.topk(logprobs, min(50, logprobs.numel()))
        candidates = {self.tokenizer.decode([int(i)]): float(lp)
                      for lp, i in zip(top.values, top.indices)}
        for option in options:  # the options' own first tokens, wherever they rank
            for variant in (option, " " + option, option.lower(), " " + option.lower()):
                token = self.tokenizer.encode(variant, add_special_tokens=False)[:1]
                if token:
                    candidates.setdefault(self.tokenizer.decode(token), float(
                        logprobs[token[0]]))
        return first_token_logprobs(candidates, options)

    def _next_token_logits(self, ids):
        from transformers import DynamicCache

        context = ids[0, :-1]
        shared = 0 if self._cache_ids is None else _shared_length(self._cache_ids, context)
        if shared < self.min_shared_prefix:  # a new prompt family: cache all but the last token
            self._cache = DynamicCache()
            self.model(input_ids=ids[:, :-1], past_key_values=self._cache, use_cache=True)
            self._cache_ids, shared = context, len(context)
        self._truncate(shared)
        self._cache_ids = self._cache_ids[:shared]
        out = self.model(input_ids=ids[:, shared:], past_key_values=self._cache, use_cache=True)
        self._truncate(shared)
        return out.logits[0, -1]

    def _truncate(self, length: int) -> None:
        extra = self._cache.get_seq_length() - length
        if extra > 0:
            self._cache.crop(-extra)

    def generate(self, prompt: str, max_new_tokens: int = 256) -> str:
        import torch

        inputs = self._inputs(prompt)
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens,
                                         do_sample=False, pad_token_id=pad)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


@LLMS.register("openai")
class OpenAICompatibleLLM(LLM):
    """`POST {base_url}/chat/completions`. Timeouts, connection errors, 429 and 5xx are
    retried with exponential backoff; other HTTP errors fail at once."""

    def __init__(self, target: str, config: LLMConfig, device: str = "cpu"):
        base_url, _, model = target.partition("#")
        if not base_url.startswith(("http://", "https://")):
            raise VadError(f"{target}: an OpenAI-compatible endpoint URL must start with http(s)://")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model or "default"
        self.api_key = os.environ.get(config.api_key_env, "")
        self.config = config

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(payload).encode(), headers)
        with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
            return json.loads(response.read())

    def _complete(self, payload: dict) -> dict:
        """The first choice of a chat completion, retried as the class docstring says."""
        delay, attempt = self.config.backoff_s, 0
        while True:
            attempt += 1
            try:
                choice = self._post(payload)["choices"][0]
                str(choice["message"]["content"])
                return choice
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise VadError(f"{self.url}: HTTP {exc.code} {exc.reason}") from None
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = str(getattr(exc, "reason", exc))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                reason = f"malformed response ({exc!r})"
            if attempt > self.config.retries:
                raise VadError(f"{self.url}: failed after {attempt} attempts ({reason})")
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs",
                        self.url, attempt, reason, delay)
            time.sleep(delay)
            delay *= 2

    def _payload(self, messages: list[dict], max_tokens: int, **options) -> dict:
        return {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.config.temperature, **options}

    def generate(self, prompt: str, max_new_tokens: int = 256) -> str:
        return self.chat([{"role": "user", "content": prompt}], max_new_tokens).strip()

    def chat(self, messages: list[dict], max_tokens: int, **options) -> str:
        """The reply to `messages` (contents may hold images) verbatim; `options` are extra
        request fields (e.g. `seed`)."""
        choice = self._complete(self._payload(messages, max_tokens, **options))
        return str(choice["message"]["content"] or "")

    def option_logprobs(self, prompt: str, options: Sequence[str],
                        answer_prefix: str = "") -> dict[str, float] | None:
        """From the server's `logprobs` of the first answer token, when it returns them
        (vLLM, llama.cpp server, OpenAI do); None otherwise or with an answer prefix."""
        if answer_prefix:
            return None
        payload = self._payload([{"role": "user", "content": prompt}], 1, logprobs=True,
                                top_logprobs=20)
        try:
            first = self._complete(payload)["logprobs"]["content"][0]
            candidates = {str(t["token"]): float(t["logprob"])
                          for t in first.get("top_logprobs") or []}
            candidates.setdefault(str(first["token"]), float(first["logprob"]))
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return first_token_logprobs(candidates, options)
