"""`vad patrol synth`: synthetic patrol sequences from real static-camera footage, in the patrol
layout (`vad.data.patrol`, docs/patrol.md). Seeded: the same inputs, config and seed give the
same sequences.

Per scene video, a background plate (the temporal median of its frames). Per sequence, a route:
a smooth path of perspective views across the plate (moving sideways while zooming in, with a
yaw sweep and a perspective tilt). The reference pass renders the route at constant speed; the
query pass renders it again at another speed and start with a pose error (a smooth offset of
position, yaw and zoom plus a per-frame shake), a lighting change (gain, gamma, a brightness
ramp), sensor noise and JPEG artefacts. In anomalous sequences, new objects cut from real
frames with their real pixel masks are pasted on the plate, so that they move with the scene
from view to view; the ground truth is their plate mask warped into every query view.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from tqdm import tqdm

from streams.sources import Source, open_source
from vad.config.patrol import SynthConfig
from vad.data.benchmarks import load_benchmark
from vad.data.patrol import ANOMALOUS, IGNORE, write_poses
from vad.errors import VadError

SMOOTH_FRAMES = 8.0  # time scale (frames) of the pose error's smooth part
FEATHER_SIGMA = 0.6  # pixels: pasted objects get anti-aliased, not cut-out, edges


@dataclass(frozen=True)
class Cutout:
    """An object cut from a real frame with its (refined) real mask."""

    source: str  # "video:frame"
    image: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    foot_y: int  # the row it stood on in its frame: placed near it, its size stays plausible


@dataclass(frozen=True)
class Route:
    """A path of views across a plate, parametrised by s in [0, 1]."""

    start: tuple[float, float]
    end: tuple[float, float]
    zoom: tuple[float, float]
    yaw: tuple[float, float]  # degrees at s = 0 and s = 1
    keystone: float
    sway: float  # amplitude (plate pixels) of a sideways sway
    sway_phase: float

    def pose(self, s: float) -> np.ndarray:
        """(x, y, yaw, zoom) of the view at s."""
        x = self.start[0] + (self.end[0] - self.start[0]) * s
        y = self.start[1] + (self.end[1] - self.start[1]) * s
        y += self.sway * np.sin(2 * np.pi * s + self.sway_phase)
        return np.array([x, y, self.yaw[0] + (self.yaw[1] - self.yaw[0]) * s,
                         self.zoom[0] + (self.zoom[1] - self.zoom[0]) * s])


def footprint(pose: np.ndarray, keystone: float, size: tuple[int, int]) -> np.ndarray:
    """The 4 plate points (clockwise from top left) seen at the corners of a view."""
    x, y, yaw, zoom = pose
    half_w, half_h = size[1] / (2 * zoom), size[0] / (2 * zoom)
    top = half_w * (1 - keystone)
    local = np.array([[-top, -half_h], [top, -half_h], [half_w, half_h], [-half_w, half_h]])
    angle = np.deg2rad(yaw)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return local @ rotation.T + np.array([x, y])


def view_homography(pose: np.ndarray, keystone: float, size: tuple[int, int]) -> np.ndarray:
    """View pixels -> plate pixels."""
    h, w = size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return cv2.getPerspectiveTransform(corners, footprint(pose, keystone, size).astype(np.float32))


def fit_inside(pose: np.ndarray, keystone: float, size: tuple[int, int],
               plate: tuple[int, int]) -> np.ndarray:
    """The pose moved (not turned or zoomed) so that its view lies inside the plate."""
    corners = footprint(pose, keystone, size)
    limits = np.array([plate[1] - 1, plate[0] - 1], float)
    low, high = corners.min(axis=0), corners.max(axis=0)
    if np.any(high - low > limits):
        raise VadError(f"a view at zoom {pose[3]:.2f} does not fit in the {plate[1]}x{plate[0]} "
                       "plate: raise patrol.synth.zoom")
    shift = np.maximum(0, -low) - np.maximum(0, high - limits)
    return np.array([pose[0] + shift[0], pose[1] + shift[1], pose[2], pose[3]])


def render(plate: np.ndarray, pose: np.ndarray, keystone: float) -> np.ndarray:
    """The view of a plate (or of a plate mask, float) at a pose, the plate's size."""
    size = plate.shape[:2]
    return cv2.warpPerspective(plate, view_homography(pose, keystone, size), (size[1], size[0]),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


# -- plates and objects ---------------------------------------------------------------------------

def _bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def background_plate(frames: Sequence[np.ndarray], count: int) -> np.ndarray:
    """Temporal median of `count` frames spread over the video: what stays put."""
    step = max(1, len(frames) // count)
    return np.median(np.stack([_bgr(f) for f in frames[::step][:count]]), axis=0).astype(np.uint8)


def _frames(source: Source) -> list[np.ndarray]:
    frames = [frame.image for frame in source]
    if not frames:
        raise VadError(f"{source.location}: no frames")
    return frames


def refine_mask(mask: np.ndarray, frame: np.ndarray, plate: np.ndarray,
                difference: float) -> np.ndarray:
    """The part of a coarse object mask that differs from the background: its largest
    connected region, closed and without holes."""
    blurred = [cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0) for image in (frame, plate)]
    differs = np.abs(blurred[0] - blurred[1]).max(axis=2) > difference
    refined = (mask & differs).astype(np.uint8)
    refined = cv2.morphologyEx(refined, cv2.MORPH_CLOSE,
                               cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(refined, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(refined)
    if contours:
        cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, cv2.FILLED)
    return filled.astype(bool) & mask


def cut_objects(root: str | Path, videos: Sequence[str] | None, config: SynthConfig,
                progress: bool = True) -> list[Cutout]:
    """Objects of the masked test videos of a benchmark folder (`test/*.mp4` with
    `test_masks/*.npz`, e.g. ../shared/data/ped2), from every `object_frame_step`-th masked
    frame, one per mask region."""
    benchmark = load_benchmark(root)
    masked = [video for video in benchmark.test if video.load_masks is not None
              and (videos is None or video.name in videos)]
    if videos is not None and sorted(v.name for v in masked) != sorted(set(videos)):
        missing = sorted(set(videos) - {v.name for v in masked})
        raise VadError(f"{root}: no masked test video {', '.join(missing)}")
    if not masked:
        raise VadError(f"{root}: no test video with pixel masks (test_masks/*.npz) to cut "
                       "objects from")
    cutouts = []
    for video in tqdm(masked, desc="cutting objects", unit="video", disable=not progress,
                      leave=False):
        frames = [_bgr(f) for f in _frames(video.open())]
        masks = video.load_masks()
        plate = background_plate(frames, config.median_frames)
        shown = [i for i in range(min(len(frames), len(masks))) if masks[i].any()]
        for i in shown[::config.object_frame_step]:
            count, labels, stats, _ = cv2.connectedComponentsWithStats(masks[i].astype(np.uint8))
            for region in range(1, count):
                refined = refine_mask(labels == region, frames[i], plate,
                                      config.object_difference)
                ys, xs = np.nonzero(refined)
                if len(ys) < config.object_min_area or _touches_border(ys, xs, refined.shape):
                    continue  # too small, or cut off by the frame's edge
                box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
                cutouts.append(Cutout(f"{video.name}:{i}", frames[i][box].copy(),
                                      refined[box].copy(), int(ys.max())))
    if not cutouts:
        raise VadError(f"{root}: no object of at least {config.object_min_area} pixels in the "
                       "masks")
    return cutouts


def _touches_border(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> bool:
    return ys.min() == 0 or xs.min() == 0 or ys.max() == shape[0] - 1 or xs.max() == shape[1] - 1


# -- one sequence -------------------------------------------------------------------------------

def smooth_noise(rng: np.random.Generator, count: int) -> np.ndarray:
    """Unit-std noise varying over about SMOOTH_FRAMES frames."""
    noise = gaussian_filter1d(rng.standard_normal(count + 64), SMOOTH_FRAMES)[32:32 + count]
    return noise / (noise.std() or 1.0)


def draw_route(rng: np.random.Generator, config: SynthConfig,
               plate: tuple[int, int]) -> Route:
    """Sideways across the plate while zooming in, in a random direction."""
    zoom = config.zoom
    keystone = float(rng.uniform(*config.keystone))
    h, w = plate
    xs, ys = [], []
    for z in zoom:  # the centres a view of this zoom may take
        half_w, half_h = w / (2 * z), h / (2 * z)
        xs.append((half_w + 2, w - half_w - 2))
        ys.append((half_h + 2, h - half_h - 2))
    start = (xs[0][0], float(rng.uniform(*ys[0])))
    end = (xs[1][1], float(rng.uniform(*ys[1])))
    if rng.random() < 0.5:  # right to left
        start, end = (xs[0][1], start[1]), (xs[1][0], end[1])
    yaw0 = float(rng.uniform(-config.route_yaw_deg, config.route_yaw_deg) / 2)
    sign = 1 if rng.random() < 0.5 else -1
    return Route(start, end, zoom, (yaw0, yaw0 + sign * config.route_yaw_deg), keystone,
                 float(rng.uniform(0, h / 40)), float(rng.uniform(0, 2 * np.pi)))


def query_positions(rng: np.random.Generator, config: SynthConfig) -> tuple[np.ndarray, float]:
    """Route parameters of the query frames: another speed, another start, uneven steps."""
    speed = float(rng.uniform(*config.query_speed))
    step = speed / (config.reference_frames - 1)
    s, positions = float(rng.uniform(0, config.start_offset)), []
    while s <= 1.0:
        positions.append(s)
        s += step * max(0.1, 1 + config.speed_jitter * rng.standard_normal())
    return np.array(positions), speed


def pose_errors(rng: np.random.Generator, config: SynthConfig, count: int) -> np.ndarray:
    """(count, 4) additive (x, y, yaw) and multiplicative (zoom) pose errors."""
    return np.stack([
        config.translation_px * smooth_noise(rng, count)
        + config.jitter_px * rng.standard_normal(count),
        config.translation_px * smooth_noise(rng, count)
        + config.jitter_px * rng.standard_normal(count),
        config.rotation_deg * smooth_noise(rng, count),
        1 + config.scale_error * smooth_noise(rng, count),
    ], axis=1)


@dataclass(frozen=True)
class Lighting:
    gain: float
    gamma: float
    ramp: float  # relative brightness change across the view
    ramp_angle: float  # radians

    @classmethod
    def draw(cls, rng: np.random.Generator, config: SynthConfig) -> Lighting:
        return cls(float(rng.uniform(*config.gain)),
                   float(np.exp(rng.uniform(*np.log(config.gamma)))),
                   float(rng.uniform(-config.gradient, config.gradient)),
                   float(rng.uniform(0, 2 * np.pi)))

    def apply(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        along = ((xx - w / 2) * np.cos(self.ramp_angle) + (yy - h / 2) * np.sin(self.ramp_angle))
        ramp = 1 + self.ramp * along / (np.hypot(w, h) / 2) / 2
        lit = self.gain * ramp[..., None] * (image.astype(np.float32) / 255) ** self.gamma
        return lit * 255


def camera(image: np.ndarray, rng: np.random.Generator, noise_sigma: float) -> np.ndarray:
    """Sensor noise and 8-bit quantisation (JPEG comes when the frame is written)."""
    noisy = image.astype(np.float32) + rng.normal(0, noise_sigma, image.shape[:2])[..., None]
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def place_objects(rng: np.random.Generator, config: SynthConfig, plate: np.ndarray,
                  cutouts: Sequence[Cutout], views: Sequence[np.ndarray], keystone: float,
                  ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The plate with new objects and their plate mask (float, feathered), each object inside
    the view of a random query frame, near the row its cutout stood on."""
    plate = plate.astype(np.float32)
    mask = np.zeros(plate.shape[:2], np.float32)
    placed: list[dict] = []
    count = int(rng.integers(config.objects_per_sequence[0], config.objects_per_sequence[1] + 1))
    for _ in range(count):
        cutout = cutouts[int(rng.integers(len(cutouts)))]
        scale = float(rng.uniform(*config.object_scale))
        image = cv2.resize(cutout.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(cutout.mask.astype(np.float32), (image.shape[1], image.shape[0]),
                           interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            image, alpha = image[:, ::-1], alpha[:, ::-1]
        alpha = cv2.GaussianBlur(alpha, (0, 0), FEATHER_SIGMA)
        view = views[int(rng.integers(len(views) // 10, max(len(views) * 9 // 10, 1)))]
        spot = _free_spot(rng, footprint(view, keystone, plate.shape[:2]), image.shape[:2],
                          cutout.foot_y, placed)
        if spot is None:
            continue
        x, y = spot
        h, w = alpha.shape
        region = (slice(y, y + h), slice(x, x + w))
        plate[region] = plate[region] * (1 - alpha[..., None]) + image * alpha[..., None]
        mask[region] = np.maximum(mask[region], alpha)
        placed.append({"source": cutout.source, "box": [x, y, x + w, y + h],
                       "scale": round(scale, 3)})
    return np.clip(np.rint(plate), 0, 255).astype(np.uint8), mask, placed


def _free_spot(rng: np.random.Generator, polygon: np.ndarray, size: tuple[int, int],
               foot_y: int, placed: list[dict], tries: int = 200) -> tuple[int, int] | None:
    """Top-left corner of a box of `size` inside the polygon, clear of placed objects, its
    bottom row as near `foot_y` as the polygon allows."""
    h, w = size
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    best, best_distance = None, np.inf
    for _ in range(tries):
        x, y = int(rng.uniform(low[0], high[0] - w)), int(rng.uniform(low[1], high[1] - h))
        corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        if any(cv2.pointPolygonTest(contour, (float(cx), float(cy)), False) < 0
               for cx, cy in corners):
            continue
        if any(x < b[2] + 4 and b[0] < x + w + 4 and y < b[3] + 4 and b[1] < y + h + 4
               for b in (p["box"] for p in placed)):
            continue
        distance = abs(y + h - foot_y)
        if distance < best_distance:
            best, best_distance = (x, y), distance
    return best


def ground_truth(mask: np.ndarray, pose: np.ndarray, keystone: float) -> np.ndarray:
    """The plate mask seen from a view: 128 where an object is, 255 where the view leaves the
    plate, 0 elsewhere."""
    size = mask.shape
    view = cv2.warpPerspective(mask, view_homography(pose, keystone, size), (size[1], size[0]),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    covered = cv2.warpPerspective(np.ones(size, np.float32), view_homography(pose, keystone, size),
                                  (size[1], size[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    truth = np.where(view >= 0.5, ANOMALOUS, 0).astype(np.uint8)
    truth[covered < 0.99] = IGNORE
    return truth


def _write(path: Path, image: np.ndarray, grey: bool, quality: int | None = None) -> None:
    if grey and image.ndim == 3:
        image = image[..., 0]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    if not cv2.imwrite(str(path), image, params):
        raise VadError(f"{path}: cannot write")


def synth_sequence(out: Path, plate: np.ndarray, cutouts: Sequence[Cutout] | None,
                   config: SynthConfig, rng: np.random.Generator) -> dict:
    """One sequence in the patrol layout under `out`; returns what was drawn."""
    size = plate.shape[:2]
    grey = bool(np.array_equal(plate[..., 0], plate[..., 1])
                and np.array_equal(plate[..., 1], plate[..., 2]))
    route = draw_route(rng, config, size)
    reference = [fit_inside(route.pose(s), route.keystone, size, size)
                 for s in np.linspace(0, 1, config.reference_frames)]
    positions, speed = query_positions(rng, config)
    errors = pose_errors(rng, config, len(positions))
    query = []
    for s, error in zip(positions, errors):
        pose = route.pose(s)
        pose = np.array([pose[0] + error[0], pose[1] + error[1], pose[2] + error[2],
                         pose[3] * error[3]])
        query.append(fit_inside(pose, route.keystone, size, size))
    scene, mask, objects = plate, np.zeros(size, np.float32), []
    if cutouts:
        scene, mask, objects = place_objects(rng, config, plate, cutouts, query, route.keystone)
    lighting = Lighting.draw(rng, config)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    for part in ("reference", "query", "mask"):
        (out / part).mkdir(parents=True)
    for i, pose in enumerate(reference):
        view = camera(render(plate, pose, route.keystone), rng, config.reference_noise_sigma)
        _write(out / "reference" / f"{i:06d}.jpg", view, grey, config.jpeg_quality[1])
    anomalous_frames = 0
    for i, pose in enumerate(query):
        view = lighting.apply(render(scene, pose, route.keystone))
        _write(out / "query" / f"{i:06d}.jpg", camera(view, rng, config.noise_sigma), grey,
               quality)
        truth = ground_truth(mask, pose, route.keystone)
        anomalous_frames += bool((truth == ANOMALOUS).any())
        _write(out / "mask" / f"{i:06d}.png", truth, grey=False)
    write_poses(out / "poses.csv", {"reference": np.array(reference)[:, :3],
                                    "query": np.array(query)[:, :3]})
    return {"reference_frames": len(reference), "query_frames": len(query),
            "anomalous_frames": anomalous_frames, "query_speed": round(speed, 3),
            "route": {k: np.round(v, 3).tolist() if isinstance(v, tuple) else round(v, 3)
                      for k, v in asdict(route).items()},
            "lighting": {k: round(v, 3) for k, v in asdict(lighting).items()},
            "jpeg_quality": quality, "objects": objects}


def synthesize(scenes: Sequence[str], objects_root: str | Path, out: str | Path,
               config: SynthConfig, object_videos: Sequence[str] | None = None,
               progress: bool = True, command: str | None = None) -> dict:
    """Sequences from every scene video into `out` (refused when it holds anything); they are
    written to `out.partial` and renamed at the end, so a failed run leaves no half root."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise VadError(f"{out}: exists and is not empty; choose a new --out")
    if not scenes:
        raise VadError("no scene videos")
    sources = [open_source(scene) for scene in scenes]
    cutouts = cut_objects(objects_root, object_videos, config, progress)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rng = np.random.default_rng(config.seed)
    sequences, index = {}, 0
    bar = tqdm(total=len(sources) * config.sequences_per_scene, desc="synthesising",
               unit="sequence", disable=not progress)
    for source in sources:
        plate = background_plate(_frames(source), config.median_frames)
        for k in range(config.sequences_per_scene):
            name = f"{source.camera_id}-{k}"
            normal = config.normal_every is not None and index % config.normal_every == 0
            drawn = synth_sequence(partial / name, plate, None if normal else cutouts,
                                   config, rng)
            sequences[name] = {"scene": source.location, "anomalous": bool(drawn["objects"]),
                               **drawn}
            index += 1
            bar.update()
    bar.close()
    summary = {"command": command, "config": config.model_dump(mode="json"),
               "objects_from": str(objects_root), "object_videos": object_videos,
               "objects_available": len(cutouts), "sequences": sequences}
    (partial / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return summary
