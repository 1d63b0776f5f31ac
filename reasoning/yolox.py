"""YOLOX-nano object detection from its ONNX export (onnxruntime, CPU).

The export takes 1x3x416x416 BGR 0-255, letterboxed with pad 114, and returns 1xNx85 raw
head outputs: (cx, cy) as grid offsets and (w, h) as log sizes per stride 8/16/32, then
objectness and 80 COCO class scores (already sigmoid-activated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vad.errors import VadError

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "yolox_nano.onnx"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    score: float
    label: str

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _grids(size: int, strides=(8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    cells, scales = [], []
    for stride in strides:
        n = size // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        scales.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(scales).astype(np.float32)


class YoloxDetector:
    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.3,
                 nms_threshold: float = 0.45, input_size: int = 416, threads: int = 1):
        import onnxruntime as ort

        path = Path(model_path or DEFAULT_MODEL)
        if not path.is_file():
            raise VadError(f"{path}: YOLOX ONNX model not found (fetch one with `vad data fetch "
                           "yolox-nano` and set reasoning.describer.model_path)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise VadError(f"{path}: not a loadable ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.cells, self.strides = _grids(input_size)

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        ratio = min(self.size / image.shape[0], self.size / image.shape[1])
        resized = cv2.resize(image, (int(image.shape[1] * ratio), int(image.shape[0] * ratio)))
        canvas = np.full((self.size, self.size, 3), 114, dtype=np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        return canvas.transpose(2, 0, 1)[None].astype(np.float32), ratio

    def __call__(self, image: np.ndarray) -> list[Detection]:
        blob, ratio = self._letterbox(image)
        out = self.session.run(None, {self.input_name: blob})[0][0]
        centers = (out[:, :2] + self.cells) * self.strides
        sizes = np.exp(np.clip(out[:, 2:4], -10, 10)) * self.strides
        class_ids = out[:, 5:].argmax(axis=1)
        scores = out[:, 4] * out[np.arange(len(out)), 5 + class_ids]
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        boxes = np.concatenate([centers - sizes / 2, sizes], axis=1)[keep] / ratio
        scores, class_ids = scores[keep], class_ids[keep]
        detections = []
        for cls in np.unique(class_ids):
            idx = np.flatnonzero(class_ids == cls)
            chosen = cv2.dnn.NMSBoxes(boxes[idx].tolist(), scores[idx].tolist(),
                                      self.score_threshold, self.nms_threshold)
            for i in np.asarray(chosen).ravel():
                x, y, w, h = boxes[idx[i]]
                detections.append(Detection((float(x), float(y), float(x + w), float(y + h)),
                                            float(scores[idx[i]]), COCO_CLASSES[cls]))
        return sorted(detections, key=lambda d: d.box[0])
