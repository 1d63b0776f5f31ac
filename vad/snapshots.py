"""Exact, pickle-free serialisation of runtime state (a camera's pipeline state checkpointed by
`vad serve`): a tree of JSON values whose leaves may also be numpy arrays, bytes or `Frame`s,
packed as one safetensors blob (the arrays) with the tree as JSON in its metadata.

A frame that came as a JPEG (`Frame.encoded`) is stored as those bytes and decoded again on
unpacking, which gives the same pixels; others are stored raw. Frames are stored once however
often the tree refers to them. Python floats survive JSON exactly (shortest repr).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from safetensors.numpy import load, save

from vad.evidence import decode_image
from vad.types import Frame

_ARRAY, _BYTES, _FRAME = "__array__", "__bytes__", "__frame__"


class SnapshotError(ValueError):
    """Bytes that are not a snapshot of this format."""


def pack(tree: Any) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    frames: dict[str, Any] = {}

    def add(array: np.ndarray) -> str:
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(array)
        return name

    def walk(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            return {_ARRAY: add(node)}
        if isinstance(node, bytes):
            return {_BYTES: add(np.frombuffer(node, np.uint8))}
        if isinstance(node, Frame):
            key = f"{node.index}"
            if key not in frames:
                pixels = (walk(node.encoded) if node.encoded is not None else walk(node.image))
                frames[key] = {"camera": node.camera_id, "index": node.index,
                               "timestamp": node.timestamp, "pixels": pixels}
            return {_FRAME: key}
        if isinstance(node, dict):
            return {str(key): walk(value) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(value) for value in node]
        if isinstance(node, (np.integer, np.floating)):
            return node.item()
        return node

    body = walk(tree)
    text = json.dumps({"tree": body, "frames": frames}, separators=(",", ":"))
    return save(arrays, metadata={"snapshot": text})


def unpack(data: bytes) -> Any:
    try:
        arrays = load(data)
        document = json.loads(_metadata(data)["snapshot"])
    except Exception as exc:  # safetensors raises its own error types
        raise SnapshotError(f"not a state snapshot ({exc})") from None
    frames: dict[str, Frame] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if _ARRAY in node:
                return arrays[node[_ARRAY]]
            if _BYTES in node:
                return arrays[node[_BYTES]].tobytes()
            if _FRAME in node:
                return frame(node[_FRAME])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    def frame(key: str) -> Frame:
        if key not in frames:
            spec = document["frames"][key]
            pixels = walk(spec["pixels"])
            encoded = pixels if isinstance(pixels, bytes) else None
            image = decode_image(encoded) if encoded is not None else pixels
            frames[key] = Frame(spec["camera"], spec["index"], spec["timestamp"], image, encoded)
        return frames[key]

    return walk(document["tree"])


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's `__metadata__` (8-byte little-endian length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size])["__metadata__"]
