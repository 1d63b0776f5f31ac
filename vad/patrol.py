"""Patrol runs and their evaluation (docs/patrol.md).

- `index_reference`: a reference pass (and its poses) as the patrol scorer's index checkpoint.
- `run_query`: a query pass through the ordinary `Pipeline` (alerts to the store, evidence
  with the matched reference), every frame's prediction handed to a `PatrolRecorder`.
- `score_predictions` / `evaluate_patrol`: UMAD's metric (pixel IoU and F1 of the anomaly
  class over all query frames, 255 ignored), box precision and recall, matching accuracy
  against the poses, the shares of unaligned and lost frames, per sequence and overall.

Predictions of a sequence, as `vad patrol run --out DIR` writes them:
    DIR/mask/000000.png ...   per query frame, 0 normal, 128 anomalous (the frame's size)
    DIR/frames.jsonl          per query frame: frame, status, reference, score, boxes (pixels)
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from models.base import get_scorer
from streams.sources import Source
from vad.config import VadConfig
from vad.config.patrol import PatrolEvalConfig
from vad.config.scorers import PatrolEntry, scorer_entry
from vad.data.patrol import (ANOMALOUS, PatrolSequence, RoutePoses, frame_files,
                             load_patrol_root, read_mask)
from vad.errors import VadError
from vad.metrics import PixelCounts, mask_boxes, matched_boxes
from vad.pipeline import Pipeline
from vad.stores.base import AlertStore, open_store
from vad.types import Alert, Frame, FrameResult

PATROL = "patrol"
FRAMES_FILE = "frames.jsonl"


def patrol_entry(config: VadConfig, checkpoint: str | None = None) -> PatrolEntry:
    """The config's patrol scorer entry (its params), else the default one."""
    entry = next((e for e in config.scorers if e.name == PATROL), None) or scorer_entry(PATROL)
    return entry if checkpoint is None else entry.model_copy(update={"checkpoint": checkpoint})


def patrol_config(config: VadConfig, index: str | Path) -> VadConfig:
    """The config with the patrol scorer on `index` as its only scorer."""
    return config.model_copy(update={"scorers": [patrol_entry(config, str(index))],
                                     "cameras": {}})


def index_reference(config: VadConfig, source: Source, out: str | Path,
                    poses: RoutePoses | None = None, provenance: dict | None = None,
                    progress: bool = True) -> Path:
    scorer = get_scorer(PATROL, patrol_entry(config).params, config.device)
    scorer.build_index(source, poses, progress)
    return scorer.save(out, provenance)


@dataclass
class PatrolRecorder:
    """Per fused frame: counts its status and, with `out`, writes its predicted mask (at the
    frame's size) and a line of `frames.jsonl`."""

    out: Path | None = None
    statuses: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.out is not None:
            shutil.rmtree(self.out / "mask", ignore_errors=True)
            (self.out / "mask").mkdir(parents=True)
            self._lines = (self.out / FRAMES_FILE).open("w")

    def __call__(self, frame: Frame, found: FrameResult, score: float) -> None:
        reference = found.reference
        status = reference.status if reference is not None else "aligned"
        self.statuses[status] += 1
        if self.out is None:
            return
        h, w = frame.image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        if found.heatmap is not None:
            hit = cv2.resize((found.heatmap > 0).astype(np.uint8), (w, h),
                             interpolation=cv2.INTER_NEAREST)
            mask[hit > 0] = ANOMALOUS
        if not cv2.imwrite(str(self.out / "mask" / f"{frame.index:06d}.png"), mask):
            raise VadError(f"{self.out}: cannot write predictions")
        self._lines.write(json.dumps({
            "frame": frame.index, "status": status,
            "reference": reference.frame if reference is not None else -1,
            "score": round(float(found.score), 4),
            "boxes": [[*box.pixels(h, w), round(box.score, 3)] for box in found.boxes]}) + "\n")

    def close(self) -> None:
        if self.out is not None:
            self._lines.close()


def run_query(config: VadConfig, source: Source, store: AlertStore,
              recorder: PatrolRecorder, poses: RoutePoses | None = None,
              progress: bool = True) -> list[Alert]:
    """The query pass through the pipeline, `config` having the patrol scorer (and only it);
    `poses`, the query's own poses (odometry), help the matching when given."""
    pipeline = Pipeline.from_config(config, store, observer=recorder)
    if poses is not None:
        for scorer in pipeline.scorers.scorers():
            scorer.query_poses[source.camera_id] = poses
    frames = tqdm(source, total=len(source) or None, desc=f"patrol {source.camera_id}",
                  unit="frame", disable=not progress, leave=False)
    try:
        alerts = pipeline.process_all(frames)
    finally:
        pipeline.close()
        recorder.close()
    return alerts


# -- scoring ------------------------------------------------------------------------------------

def read_frame_lines(path: Path) -> dict[int, dict[str, Any]]:
    """`frames.jsonl` of a prediction folder by frame; {} when there is none."""
    if not path.is_file():
        return {}
    lines = {}
    for number, text in enumerate(path.read_text().splitlines(), 1):
        try:
            line = json.loads(text)
            lines[int(line["frame"])] = line
        except (ValueError, KeyError, TypeError):
            raise VadError(f"{path}:{number}: not a prediction line") from None
    return lines


@dataclass
class SequenceScore:
    name: str
    frames: int
    anomalous: bool
    pixels: PixelCounts
    boxes_predicted: int
    boxes_true: int
    boxes_matched: int
    statuses: Counter
    matches_right: int | None  # against the poses; None without poses or statuses
    matched: int
    alerts: int | None = None

    def row(self) -> dict[str, Any]:
        return {"sequence": self.name, "frames": self.frames, "anomalous": self.anomalous,
                "iou": self.pixels.iou, "f1": self.pixels.f1,
                "precision": self.pixels.precision, "recall": self.pixels.recall,
                "box_precision": _share(self.boxes_matched, self.boxes_predicted),
                "box_recall": _share(self.boxes_matched, self.boxes_true),
                "match_accuracy": (None if self.matches_right is None
                                   else _share(self.matches_right, self.matched)),
                "unaligned_share": _share(self.statuses["unaligned"], self.frames),
                "lost_share": _share(self.statuses["lost"], self.frames),
                "alerts": self.alerts}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def score_sequence(sequence: PatrolSequence, predictions: Path,
                   config: PatrolEvalConfig) -> SequenceScore:
    """A sequence's predictions (`vad patrol run --out` layout) against its ground truth."""
    masks = sequence.mask_files()
    if not (predictions / "mask").is_dir():
        raise VadError(f"{predictions}: no predictions for sequence {sequence.name} (run "
                       f"`vad patrol run {sequence.query_dir} --reference INDEX --out "
                       f"{predictions}`)")
    predicted = frame_files(predictions / "mask")
    if len(predicted) != len(masks):
        raise VadError(f"{predictions}: {len(predicted)} predicted masks for {len(masks)} "
                       "query frames")
    lines = read_frame_lines(predictions / FRAMES_FILE)
    poses = sequence.poses()
    pose_truth = _pose_truth(poses) if set(poses) == {"reference", "query"} and lines else None
    pixels, statuses = PixelCounts(), Counter()
    boxes = [0, 0, 0]
    right = matched = 0
    anomalous = False
    for frame, (truth_path, predicted_path) in enumerate(zip(masks, predicted)):
        truth = read_mask(truth_path)
        prediction = read_mask(predicted_path, truth.shape) == ANOMALOUS
        pixels.add(prediction, truth)
        anomalous |= bool((truth == ANOMALOUS).any())
        line = lines.get(frame)
        predicted_boxes = ([tuple(b[:4]) for b in line["boxes"]] if line is not None
                           else mask_boxes(prediction))
        true_boxes = mask_boxes(truth == ANOMALOUS, config.min_box_area)
        boxes[0] += len(predicted_boxes)
        boxes[1] += len(true_boxes)
        boxes[2] += matched_boxes(predicted_boxes, true_boxes, config.box_iou)
        if line is not None:
            statuses[line["status"]] += 1
            if pose_truth is not None and line["reference"] >= 0 and frame in pose_truth:
                matched += 1
                right += abs(line["reference"] - pose_truth[frame]) <= config.match_tolerance
    return SequenceScore(sequence.name, len(masks), anomalous, pixels, boxes[0], boxes[1],
                         boxes[2], statuses, right if pose_truth is not None else None, matched)


def _pose_truth(poses: dict[str, RoutePoses]) -> dict[int, int]:
    """Per query frame, the reference frame nearest its pose (position)."""
    reference, query = poses["reference"], poses["query"]
    truth = {}
    for frame, pose in zip(query.frames, query.poses):
        distance = np.linalg.norm(reference.poses[:, :2] - pose[:2], axis=1)
        truth[int(frame)] = int(reference.frames[int(np.argmin(distance))])
    return truth


def summarise(scores: list[SequenceScore]) -> dict[str, Any]:
    pixels = PixelCounts()
    for score in scores:
        pixels += score.pixels
    statuses = sum((s.statuses for s in scores), Counter())
    frames = sum(s.frames for s in scores)
    with_poses = [s for s in scores if s.matches_right is not None]
    normal = [s for s in scores if not s.anomalous and s.alerts is not None]
    return {
        "iou": pixels.iou, "f1": pixels.f1, "precision": pixels.precision,
        "recall": pixels.recall, "frames": frames, "sequences": len(scores),
        "box_precision": _share(sum(s.boxes_matched for s in scores),
                                sum(s.boxes_predicted for s in scores)),
        "box_recall": _share(sum(s.boxes_matched for s in scores),
                             sum(s.boxes_true for s in scores)),
        "match_accuracy": (_share(sum(s.matches_right for s in with_poses),
                                  sum(s.matched for s in with_poses)) if with_poses else None),
        "unaligned_share": _share(statuses["unaligned"], frames),
        "lost_share": _share(statuses["lost"], frames),
        "normal_sequences": len([s for s in scores if not s.anomalous]),
        "normal_sequences_with_alerts": (sum(s.alerts > 0 for s in normal) if normal
                                         else None),
        "per_sequence": [s.row() for s in scores],
    }


# -- the whole evaluation -----------------------------------------------------------------------

def evaluate_patrol(root: str | Path, config: VadConfig, out: str | Path,
                    predictions: str | Path | None = None, progress: bool = True,
                    provenance: dict | None = None) -> dict[str, Any]:
    """Score every sequence of a patrol root: its saved predictions (`predictions/<sequence>`)
    or, without them, a fresh run (index the reference, run the query through the pipeline
    with an in-memory store, then score). Writes report.json and a strip per sequence."""
    sequences = load_patrol_root(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.patrol.eval
    scores = []
    for sequence in tqdm(sequences, desc="patrol eval", unit="sequence", disable=not progress):
        if predictions is None:
            folder = out / "predictions" / sequence.name
            alerts = _run_sequence(sequence, config, out / "index" / sequence.name, folder,
                                   progress, provenance)
        else:
            folder, alerts = Path(predictions) / sequence.name, None
        score = score_sequence(sequence, folder, settings)
        score.alerts = None if alerts is None else len(alerts)
        scores.append(score)
        write_strip(sequence, folder, out / "strips" / f"{sequence.name}.jpg",
                    settings.strip_frames)
    report = {"root": str(root), "predictions": None if predictions is None else str(predictions),
              **summarise(scores), "config": config.patrol.model_dump(mode="json"),
              "params": patrol_entry(config).params.model_dump(mode="json"),
              "provenance": provenance or {}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _run_sequence(sequence: PatrolSequence, config: VadConfig, index: Path, predictions: Path,
                  progress: bool, provenance: dict | None) -> list[Alert]:
    poses = sequence.poses()
    index_reference(config, sequence.reference(), index, poses.get("reference"), provenance,
                    progress=False)
    query_poses = poses.get("query") if config.patrol.eval.query_poses else None
    with open_store("sqlite:///:memory:") as store:
        return run_query(patrol_config(config, index), sequence.query(), store,
                         PatrolRecorder(predictions), query_poses, progress)


# -- strips -------------------------------------------------------------------------------------

def write_strip(sequence: PatrolSequence, predictions: Path, path: Path, count: int) -> Path:
    """Rows of reference | query | prediction | ground truth for `count` query frames (spread
    over those with a true or predicted anomaly, else over the sequence)."""
    masks, predicted = sequence.mask_files(), frame_files(predictions / "mask")
    queries, references = frame_files(sequence.query_dir), frame_files(sequence.reference_dir)
    lines = read_frame_lines(predictions / FRAMES_FILE)
    interesting = [i for i in range(len(masks))
                   if (read_mask(masks[i]) == ANOMALOUS).any()
                   or (read_mask(predicted[i]) == ANOMALOUS).any()]
    pool = interesting or list(range(len(masks)))
    chosen = [pool[int(round(k))] for k in np.linspace(0, len(pool) - 1, min(count, len(pool)))]
    rows = []
    for i in chosen:
        query = cv2.imread(str(queries[i]), cv2.IMREAD_COLOR)
        reference_index = lines.get(i, {}).get("reference", -1)
        reference = (cv2.imread(str(references[reference_index]), cv2.IMREAD_COLOR)
                     if 0 <= reference_index < len(references) else np.zeros_like(query))
        reference = cv2.resize(reference, (query.shape[1], query.shape[0]))
        truth = read_mask(masks[i]) == ANOMALOUS
        prediction = read_mask(predicted[i]) == ANOMALOUS
        boxes = [b[:4] for b in lines.get(i, {}).get("boxes", [])] or mask_boxes(prediction)
        rows.append(np.hstack([_labelled(reference, f"reference {reference_index}"),
                               _labelled(query, f"query {i}"),
                               _labelled(_overlay(query, prediction, (0, 0, 255), boxes),
                                         "prediction"),
                               _labelled(_overlay(query, truth, (0, 200, 0), []),
                                         "ground truth")]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise VadError(f"{path}: cannot write")
    return path


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
             boxes: Iterable[Iterable[int]]) -> np.ndarray:
    out = image.copy()
    out[mask] = (0.5 * out[mask] + 0.5 * np.array(colour)).astype(np.uint8)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), colour, 2)
    return out


def _labelled(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out
