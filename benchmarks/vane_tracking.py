"""How the `vad:` VANE answerer's tracker behaves on normal footage sampled like VANE clips.

    python benchmarks/vane_tracking.py [--dataset ../shared/data/ped2] [--config configs/demo.yaml]
        [--reach 1,3]

Normal (training) videos are cut into windows of `--window` frames (two per video: its start
and its end), each sampled like a VANE clip (10 frames uniformly), and given to the answerer's
tracker and evidence extractor. In normal footage people walk at similar speeds, so a person
track that reads "faster than the people walking" there is mostly strangers linked into one
track, and a track started after the first frame is someone coming into view or a broken
link. Prints, per tracking method (`vane.pipeline.track_prediction`) and reach: the person
tracks seen in at least 3 frames, the share of them that read faster, their mean length, the
share of later detections that start a track, and the share of clips whose chosen anomalous
object reads faster. Training videos only, never a question's answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vad.config import load_config
from vad.errors import VadError
from vad.types import Frame
from vad.vane.attributes import FASTER
from vad.vane.builder import sample_indices
from vad.vane.evidence import given_frame_flows, people_speed, track, track_speed

METHODS = ("velocity", "flow")


def training_clips(dataset: Path, window: int, count: int) -> list[list[Frame]]:
    """Two VANE-like clips per normal video: `count` frames over its first and its last
    `window` frames (one clip when the video is no longer than the window)."""
    from vad.data.benchmarks import load_benchmark

    out = []
    for video in load_benchmark(dataset).train.videos:
        frames = list(video.open())
        starts = sorted({0, max(0, len(frames) - window)})
        for start in starts:
            last = min(len(frames), start + window) - 1
            out.append([frames[i] for i in sample_indices(start, last, count)])
    if not out:
        raise VadError(f"{dataset}: no training videos")
    return out


def measure(extractor, clips: list[list[Frame]], method: str) -> dict[str, float]:
    settings = extractor.settings
    faster_above = settings.pace.faster_above
    tracks_seen, tracks_faster, lengths, clips_faster, later, found = 0, 0, [], 0, 0, 0
    for frames in clips:
        images = [f.image for f in frames]
        gaps = [float(max(b.index - a.index, 1)) for a, b in zip(frames, frames[1:])]
        detections = [extractor.detector(image) for image in images]
        tracks = track(images, detections, settings.track_reach, settings.appearance_weight,
                       given_frame_flows(images) if method == "flow" else None)
        # A track started after the first frame: someone came into view, or a link broke.
        later += sum(1 for t in tracks if t.sightings[0][0] > 0)
        found += sum(len(d) for d in detections[1:])
        for person in (t for t in tracks if t.label == "person" and len(t.sightings) >= 3):
            speed, people = track_speed(person, gaps), people_speed(tracks, gaps, person)
            if speed is None or not people:
                continue
            tracks_seen += 1
            tracks_faster += speed / people > faster_above
            lengths.append(len(person.sightings))
        clips_faster += extractor.evidence(frames).pace == FASTER
    return {"person_tracks": tracks_seen,
            "faster_track_share": tracks_faster / max(tracks_seen, 1),
            "mean_track_frames": float(np.mean(lengths)) if lengths else 0.0,
            "new_track_share": later / max(found, 1),
            "faster_clip_share": clips_faster / len(clips)}


def run(args: argparse.Namespace) -> None:
    from vad.vane.pipeline_answerer import PipelineAnswerer

    pipeline = load_config(args.config)
    extractor = PipelineAnswerer(str(args.config), pipeline.vane).extractor
    clips = training_clips(args.dataset, args.window, pipeline.vane.build.frames)
    print(f"clips={len(clips)} window={args.window} frames={pipeline.vane.build.frames}")
    base = extractor.settings
    args.reach = args.reach or [base.track_reach]
    for method, reach in [(m, r) for m in METHODS for r in args.reach]:
        extractor.settings = base.model_copy(update={"track_prediction": method,
                                                     "track_reach": reach})
        result = measure(extractor, clips, method)
        print(f"track_prediction={method} track_reach={reach:g} " + " ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--window", type=int, default=120, help="frames per clip (Ped2's "
                        "annotated anomalous intervals are 86-180 frames)")
    parser.add_argument("--reach", type=lambda text: [float(v) for v in text.split(",")],
                        help="track_reach values to compare (default: the config's)")
    args = parser.parse_args(argv)
    try:
        run(args)
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
