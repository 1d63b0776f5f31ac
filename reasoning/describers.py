"""Perception: frames -> one AnomalyRuler-style text description per frame.

Backends, by name: `files` (descriptions written beforehand, one line per frame),
`detector` (YOLOX-nano objects + per-object motion; no vision-language model needed) and
`vlm` (a Hugging Face vision-language model asked AnomalyRuler's question).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reasoning.descriptions import descriptions_for, read_descriptions
from vad.registry import Registry
from reasoning.yolox import Detection, YoloxDetector
from vad.config.reasoning import (DescribedMotion, DescriberConfig, DetectorDescriberConfig,
                                   FilesDescriberConfig, VLMDescriberConfig)
from vad.errors import VadError
from vad.types import Frame



class Describer(ABC):
    """Describes consecutive frames of one camera, one description per frame."""

    @abstractmethod
    def describe(self, frames: Sequence[Frame]) -> list[str]: ...


DESCRIBERS: Registry[Describer] = Registry("describer")


def build_describer(config: DescriberConfig, device: str = "cpu") -> Describer:
    """The describer of a `reasoning.describer` section; `device` for model-based ones."""
    return DESCRIBERS.get(config.kind)(config, device)


@DESCRIBERS.register("files")
class FileDescriber(Describer):
    """Line `frame.index` of `<directory>/<prefix>_<camera_id>.txt` (or `<camera_id>.txt`)."""

    def __init__(self, config: FilesDescriberConfig, device: str = "cpu"):
        self.files = read_descriptions(config.directory)
        self.directory = config.directory
        self._cameras: dict[str, list[str]] = {}

    def _lines(self, camera: str) -> list[str]:
        if camera not in self._cameras:
            self._cameras[camera] = descriptions_for(self.files, [camera],
                                                     str(self.directory))[camera]
        return self._cameras[camera]

    def describe(self, frames: Sequence[Frame]) -> list[str]:
        out = []
        for frame in frames:
            lines = self._lines(frame.camera_id)
            if not 0 <= frame.index < len(lines):
                raise VadError(f"{self.directory}: camera {frame.camera_id!r} has no "
                               f"description for frame {frame.index} ({len(lines)} lines)")
            out.append(lines[frame.index])
        return out


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth")


@dataclass
class _Track:
    label: str
    history: list[tuple[float, float, float]]  # (time, x, y) of the centre, oldest first

    @property
    def center(self) -> tuple[float, float]:
        return self.history[-1][1], self.history[-1][2]


def _region(center: tuple[float, float], shape: tuple[int, int]) -> str:
    x, y = center[0] / shape[1], center[1] / shape[0]
    column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "center"
    row = "upper " if y < 1 / 3 else "lower " if y > 2 / 3 else ""
    return f"{'in' if column == 'center' else 'on'} the {row}{column}"


def _motion(ratio: float | None, label: str, config: DescribedMotion) -> str:
    if ratio is None:  # first sighting: no motion known yet
        return ""
    if ratio < config.still_below:
        return "standing still" if label == "person" else "not moving"
    if ratio > config.very_fast_above:
        return f"moving very fast ({ratio:.1f}x normal walking speed)"
    if ratio > config.fast_above:
        return f"moving fast ({ratio:.1f}x normal walking speed)"
    return "walking at normal speed" if label == "person" else "moving at walking speed"


@DESCRIBERS.register("detector")
class DetectorDescriber(Describer):
    """YOLOX-nano detections, matched frame to frame by nearest centre of the same class;
    each object's speed is in body heights per second relative to normal walking."""

    def __init__(self, config: DetectorDescriberConfig = DetectorDescriberConfig(),
                 device: str = "cpu"):
        self.detector = YoloxDetector(config.model_path, config.score_threshold)
        self.motion = config.motion
        self._tracks: dict[str, list[_Track]] = {}
        self._last_time: dict[str, float] = {}

    def reset(self) -> None:
        self._tracks.clear()
        self._last_time.clear()

    def describe(self, frames: Sequence[Frame]) -> list[str]:
        return [self._describe_one(frame) for frame in frames]

    def speeds(self, frame: Frame) -> list[tuple[Detection, float | None]]:
        """(detection, speed in body heights/s or None when new), tracks updated."""
        camera = frame.camera_id
        gap = frame.timestamp - self._last_time.get(camera, -np.inf)
        if not 0 < gap <= self.motion.max_gap_s:
            self._tracks.pop(camera, None)  # old positions say nothing about speed now
        self._last_time[camera] = frame.timestamp
        previous = list(self._tracks.get(camera, []))
        current, out = [], []
        for det in self.detector(frame.image):
            track = self._match(previous, det, gap)
            history = [(frame.timestamp, *det.center)]
            speed = None
            if track is not None:
                previous.remove(track)
                history = (track.history + history)[-(self.motion.speed_frames + 1):]
                (t0, x0, y0), (t1, x1, y1) = history[0], history[-1]
                speed = float(np.hypot(x1 - x0, y1 - y0) / max(det.height, 1.0)
                              / max(t1 - t0, 1e-3))
            current.append(_Track(det.label, history))
            out.append((det, speed))
        self._tracks[camera] = current
        return out

    def _match(self, tracks: list[_Track], det: Detection, gap: float) -> _Track | None:
        candidates = [t for t in tracks if t.label == det.label]
        if not candidates:
            return None
        dist = [np.hypot(det.center[0] - t.center[0], det.center[1] - t.center[1])
                for t in candidates]
        best = int(np.argmin(dist))
        reach = self.motion.max_speed * gap * max(det.height, 1.0)
        return candidates[best] if dist[best] <= reach else None

    def _describe_one(self, frame: Frame) -> str:
        shape = frame.image.shape[:2]
        people, others = [], []
        for det, speed in self.speeds(frame):
            ratio = None if speed is None else speed / self.motion.normal_speed
            action = _motion(ratio, det.label, self.motion)
            (people if det.label == "person" else others).append(
                (det, " ".join(filter(None, (action, _region(det.center, shape))))))
        if not people:
            text = "There are no people in the image."
        else:
            count = "is 1 person" if len(people) == 1 else f"are {len(people)} people"
            parts = [f"There {count} in the image."]
            for i, (_, what) in enumerate(people):
                who = f"The {ORDINALS[i]} person" if i < len(ORDINALS) else f"Person {i + 1}"
                parts.append(f"{who} is {what}.")
            text = " ".join(parts)
        if others:
            listed = ", ".join(f"a {det.label} {what}" for det, what in others)
            return f"{text} Other than people, there is {listed}."
        return f"{text} Other than people, nothing else is detected."


@DESCRIBERS.register("vlm")
class VLMDescriber(Describer):
    """A Hugging Face image-text-to-text model (id or local directory) asked the configured question."""

    def __init__(self, config: VLMDescriberConfig, device: str = "cpu"):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(config.model)
            self.model = AutoModelForImageTextToText.from_pretrained(config.model).to(
                device).eval()
        except (OSError, ValueError) as exc:
            raise VadError(f"{config.model}: cannot load a vision-language model ({exc})") from None
        self.question = config.question
        self.max_new_tokens = config.max_new_tokens
        self.device = device

    def describe(self, frames: Sequence[Frame]) -> list[str]:
        import cv2
        import torch
        from PIL import Image

        out = []
        for frame in frames:
            image = frame.image if frame.image.ndim == 3 else np.stack([frame.image] * 3, -1)
            pil = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            inputs = self.processor(images=pil, text=self.question, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                          do_sample=False)
            text = self.processor.batch_decode(
                _without_prompt(ids[0], inputs.get("input_ids"))[None], skip_special_tokens=True)[0]
            out.append(" ".join(text.split()))
        return out


def _without_prompt(ids, prompt_ids):
    """Generated ids after the longest prefix they share with the prompt: decoder-only
    models echo the prompt, some (BLIP) echo most of it, encoder-decoders none."""
    if prompt_ids is None:
        return ids
    prompt = prompt_ids[0]
    n = min(len(ids), len(prompt))
    same = (ids[:n] == prompt[:n]).long().cumprod(0).sum()
    return ids[int(same):]


def calibrate_normal_speed(describer: DetectorDescriber, sources) -> float:
    """Median person speed (body heights/s) on normal footage."""
    speeds = []
    for source in sources:
        describer.reset()
        speeds += [s for frame in source for det, s in describer.speeds(frame)
                   if s is not None and det.label == "person"]
    if not speeds:
        raise VadError("no person was tracked in the calibration footage")
    return float(np.median(speeds))
