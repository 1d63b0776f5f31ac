"""The reference route as an index: per reference frame a global descriptor (fast matching),
ORB keypoints and descriptors (alignment), the grey frame itself (comparison, evidence) and,
when given, its pose. Stored as plain tensors (safetensors, no pickle)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from models.base import checked_tensor
from vad.errors import VadError

ORB_BYTES = 32


def global_descriptor(gray: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A unit vector summarising a frame's layout, unchanged by brightness gain and offset and
    little changed by gamma or small shifts: the gradients of a blurred thumbnail, each
    normalised by the local contrast."""
    small = cv2.resize(gray, (grid[1] * 2, grid[0] * 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 2.0)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
    contrast = cv2.GaussianBlur(np.hypot(gx, gy), (0, 0), 2.0) + 1.0
    vector = np.stack([gx / contrast, gy / contrast])
    vector = cv2.resize(vector.transpose(1, 2, 0), (grid[1], grid[0]),
                        interpolation=cv2.INTER_AREA).ravel()
    vector -= vector.mean()
    return (vector / (np.linalg.norm(vector) + 1e-9)).astype(np.float32)


class Features:
    """ORB keypoints of a grey frame: (K, 2) float32 positions, (K, 32) uint8 descriptors."""

    def __init__(self, count: int):
        self.orb = cv2.ORB_create(nfeatures=count, fastThreshold=10)

    def __call__(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keypoints, descriptors = self.orb.detectAndCompute(gray, None)
        if descriptors is None:
            return np.zeros((0, 2), np.float32), np.zeros((0, ORB_BYTES), np.uint8)
        return np.array([k.pt for k in keypoints], np.float32), descriptors


@dataclass
class ReferenceIndex:
    frames: np.ndarray  # (N, H, W) uint8 grey, at the working size
    descriptors: np.ndarray  # (N, D) float32 unit vectors
    keypoints: np.ndarray  # (M, 2) float32, all frames' keypoints concatenated
    keypoint_descriptors: np.ndarray  # (M, 32) uint8
    offsets: np.ndarray  # (N + 1,) int64: frame i's keypoints are offsets[i]:offsets[i + 1]
    # (N, 2) float32: where frame i + 1's centre lies in frame i, minus frame i's centre (the
    # route's direction in the image; the last frame repeats the one before).
    steps: np.ndarray
    poses: np.ndarray | None = None  # (N, 3) float64 x, y, yaw

    def __len__(self) -> int:
        return len(self.frames)

    def features(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.keypoints[lo:hi], self.keypoint_descriptors[lo:hi]

    @classmethod
    def build(cls, frames: Iterable[np.ndarray], grid: tuple[int, int], features: int,
              poses: np.ndarray | None = None) -> ReferenceIndex:
        """From grey uint8 frames at the working size."""
        extract = Features(features)
        kept, descriptors, points, binary = [], [], [], []
        for gray in frames:
            kept.append(gray)
            descriptors.append(global_descriptor(gray, grid))
            xy, desc = extract(gray)
            points.append(xy)
            binary.append(desc)
        if not kept:
            raise VadError("the reference has no frames to index")
        if poses is not None and len(poses) != len(kept):
            raise VadError(f"{len(poses)} reference poses for {len(kept)} reference frames")
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in points])]).astype(np.int64)
        steps = route_steps(list(zip(points, binary)), kept[0].shape)
        return cls(np.stack(kept), np.stack(descriptors), np.concatenate(points),
                   np.concatenate(binary), offsets, steps,
                   None if poses is None else np.asarray(poses, np.float64))

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {"frames": self.frames, "descriptors": self.descriptors,
                   "keypoints": self.keypoints, "keypoint_descriptors": self.keypoint_descriptors,
                   "keypoint_offsets": self.offsets, "steps": self.steps}
        if self.poses is not None:
            tensors["poses"] = self.poses
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], size: tuple[int, int],
                     descriptor_size: int) -> ReferenceIndex:
        frames = checked_tensor(tensors, "frames", (None, *size), np.uint8)
        count = len(frames)
        if count == 0:
            raise VadError("the index holds no reference frames")
        descriptors = checked_tensor(tensors, "descriptors", (count, descriptor_size))
        offsets = checked_tensor(tensors, "keypoint_offsets", (count + 1,), np.int64)
        keypoints = checked_tensor(tensors, "keypoints", (None, 2))
        binary = checked_tensor(tensors, "keypoint_descriptors", (len(keypoints), ORB_BYTES),
                                np.uint8)
        if offsets[0] != 0 or offsets[-1] != len(keypoints) or np.any(np.diff(offsets) < 0):
            raise VadError("tensor 'keypoint_offsets' does not partition the keypoints")
        steps = checked_tensor(tensors, "steps", (count, 2))
        poses = (checked_tensor(tensors, "poses", (count, 3), np.float64)
                 if "poses" in tensors else None)
        extra = set(tensors) - {"frames", "descriptors", "keypoint_offsets", "keypoints",
                                "keypoint_descriptors", "steps", "poses"}
        if extra:
            raise VadError(f"unexpected tensors {sorted(extra)}")
        return cls(frames, descriptors, keypoints, binary, offsets, steps, poses)


def route_steps(features: list[tuple[np.ndarray, np.ndarray]],
                shape: tuple[int, int]) -> np.ndarray:
    """Per frame, the image motion of the view centre to the next frame (keypoint homography
    between neighbours; where one cannot be found, the previous step)."""
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    centre = np.array([[[shape[1] / 2, shape[0] / 2]]], np.float64)
    steps = np.zeros((len(features), 2), np.float32)
    for i in range(len(features) - 1):
        (xy, desc), (next_xy, next_desc) = features[i], features[i + 1]
        step = steps[i - 1] if i else np.zeros(2, np.float32)
        if len(desc) >= 8 and len(next_desc) >= 8:
            pairs = matcher.match(next_desc, desc)
            if len(pairs) >= 8:
                homography, _ = cv2.findHomography(next_xy[[m.queryIdx for m in pairs]],
                                                   xy[[m.trainIdx for m in pairs]], cv2.RANSAC,
                                                   3.0)
                if homography is not None:
                    step = (cv2.perspectiveTransform(centre, homography) - centre).ravel()
        steps[i] = step
    if len(features) > 1:
        steps[-1] = steps[-2]
    return steps
