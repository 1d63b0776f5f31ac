"""Answerers: whatever answers a VANE-Bench question from its frames, behind one interface
and a registry by spec prefix.

- `openai:URL#MODEL`: an OpenAI-compatible chat endpoint with image input (vLLM, Ollama,
  llama.cpp server, a hosted API): the paper's protocol, the frames as JPEG data URLs after
  the question verbatim, temperature 0, at most 2 tokens.
- `hf:ID_OR_DIR`: a Hugging Face image-text-to-text model, all frames in one message.
- `vad:CONFIG`: the pipeline itself (`vad.vane.pipeline_answerer`).

With `vane.free_form` the openai and hf answerers ask for a sentence instead of a letter;
the runner maps it to a letter and reports that separately.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from vad.config import validated
from vad.config.reasoning import LLMConfig
from vad.config.vane import VaneConfig
from vad.errors import VadError
from vad.registry import Registry
from vad.vane.questions import ClipFrame, Question


@dataclass(frozen=True)
class Answer:
    text: str  # the reply, written verbatim (one line) as the official prediction
    evidence: str = ""  # what the answer rests on, when the answerer can say


class Answerer(ABC):
    """Answers one question from its clip's frames."""

    spec: str = ""

    @abstractmethod
    def answer(self, question: Question, frames: Sequence[ClipFrame]) -> Answer: ...


ANSWERERS: Registry[Answerer] = Registry("answerer")


def build_answerer(spec: str, config: VaneConfig, device: str = "cpu") -> Answerer:
    """The answerer of `KIND:TARGET` (`openai:URL#MODEL`, `hf:ID_OR_DIR`, `vad:CONFIG`)."""
    import vad.vane.pipeline_answerer  # noqa: F401  (registers "vad")

    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise VadError(f"--answerer {spec!r}: expected KIND:TARGET with KIND one of "
                       f"{', '.join(ANSWERERS.names())}")
    answerer = ANSWERERS.get(kind)(target, config, device)
    answerer.spec = spec
    return answerer


@ANSWERERS.register("openai")
class OpenAIAnswerer(Answerer):
    def __init__(self, target: str, config: VaneConfig, device: str = "cpu"):
        from reasoning.llm import OpenAICompatibleLLM

        settings = config.openai
        # One retry policy for every answerer: the runner's (vane.retries, vane.timeout_s).
        llm_config = validated(LLMConfig, {
            "spec": f"openai:{target}", "timeout_s": config.timeout_s, "retries": 0,
            "temperature": settings.temperature, "api_key_env": settings.api_key_env},
            "vane.openai")
        self.client = OpenAICompatibleLLM(target, llm_config)
        self.settings = settings
        self.free_form = config.free_form
        self.max_tokens = config.free_form_max_tokens if config.free_form else settings.max_tokens

    def answer(self, question: Question, frames: Sequence[ClipFrame]) -> Answer:
        images = [{"type": "image_url", "image_url": {
            "url": "data:image/jpeg;base64," + base64.b64encode(f.jpeg()).decode("ascii")}}
            for f in frames]
        system = self.settings.free_form_prompt if self.free_form else self.settings.system_prompt
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": [{"type": "text", "text": question.text},
                                                 *images]}]
        options = {} if self.settings.seed is None else {"seed": self.settings.seed}
        return Answer(self.client.chat(messages, self.max_tokens, **options))


@ANSWERERS.register("hf")
class HFAnswerer(Answerer):
    """An image-text-to-text model with a chat template that takes several images."""

    def __init__(self, target: str, config: VaneConfig, device: str = "cpu"):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(target)
            self.model = AutoModelForImageTextToText.from_pretrained(target).to(device).eval()
        except (OSError, ValueError) as exc:
            raise VadError(f"{target}: cannot load an image-text-to-text model "
                           f"({str(exc).splitlines()[0]})") from None
        if not getattr(self.processor, "chat_template", None):
            raise VadError(f"{target}: the processor has no chat template to place the images")
        self.device = device
        self.free_form = config.free_form
        self.instruction = config.hf.letter_instruction
        self.max_new_tokens = (config.free_form_max_tokens if config.free_form
                               else config.hf.max_new_tokens)

    def answer(self, question: Question, frames: Sequence[ClipFrame]) -> Answer:
        import cv2
        import torch
        from PIL import Image

        images = [Image.fromarray(cv2.cvtColor(f.image(), cv2.COLOR_BGR2RGB)) for f in frames]
        text = question.text if self.free_form else f"{question.text}\n{self.instruction}"
        messages = [{"role": "user", "content": [*({"type": "image", "image": image}
                                                   for image in images),
                                                 {"type": "text", "text": text}]}]
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt").to(self.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                         do_sample=False)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return Answer(self.processor.decode(new_tokens, skip_special_tokens=True))
