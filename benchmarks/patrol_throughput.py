"""Throughput of patrol mode: query frames per second at 240x360 through the whole pipeline.

    python benchmarks/patrol_throughput.py [--root PATROL_ROOT --sequence NAME]

Without --root, one sequence is synthesised from UCSD Ped2 (test video 04, objects from test
video 08; seed 0, default difficulty) into a temporary folder. Its reference is indexed (not
timed), then the query pass runs `--passes` times (after a warm-up pass) through the same
`Pipeline` as `vad patrol run`, with an in-memory store: JPEG decoding, matching, alignment,
change detection, events and alerts. The last line, `fps=<n>`, is query frames per wall-clock
second; `cpu_fps` is per CPU-second of this process (what it costs, whatever else runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from vad.config import load_config  # noqa: E402
from vad.data.patrol import load_patrol_root  # noqa: E402
from vad.errors import VadError  # noqa: E402
from vad.patrol import PatrolRecorder, index_reference, patrol_config  # noqa: E402
from vad.pipeline import Pipeline  # noqa: E402
from vad.stores import open_store  # noqa: E402

PED2 = REPO.parent / "shared" / "data" / "ped2"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="patrol root (default: synthesise one "
                                                  "sequence from ../shared/data/ped2)")
    parser.add_argument("--sequence", help="sequence of the root (default: its first)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the query")
    return parser.parse_args(argv)


def synthesised(folder: Path) -> Path:
    from vad.config.patrol import SynthConfig
    from vad.data.patrol_synth import synthesize

    if not (PED2 / "test_labels.csv").is_file():
        raise VadError(f"{PED2}: UCSD Ped2 not found; pass --root")
    root = folder / "root"
    synthesize([str(PED2 / "test" / "04.mp4")], PED2, root,
               SynthConfig(sequences_per_scene=2, normal_every=2), object_videos=["08"],
               progress=False)
    return root


def measure(root: Path, name: str | None, passes: int, work: Path) -> dict[str, float]:
    sequences = load_patrol_root(root)
    sequence = next((s for s in sequences if s.name == name), None) if name else sequences[-1]
    if sequence is None:
        raise VadError(f"{root}: no sequence {name!r}")
    config = load_config()
    index = index_reference(config, sequence.reference(), work / "index", progress=False)
    config = patrol_config(config, index)
    frames = len(list(sequence.query()))

    def one_pass() -> None:
        with open_store("sqlite:///:memory:") as store:
            pipeline = Pipeline.from_config(config, store, observer=PatrolRecorder())
            pipeline.process_all(sequence.query())  # decoded from JPEG as it goes
            pipeline.close()

    one_pass()  # warm-up: lazy initialisation, caches
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(passes):
        one_pass()
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    shape = cv2.imread(str(sequence.query_dir / "000000.jpg")).shape[:2]
    return {"sequence": sequence.name, "frames": frames, "height": shape[0], "width": shape[1],
            "fps": passes * frames / wall, "cpu_fps": passes * frames / cpu}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = args.root or synthesised(Path(folder))
            result = measure(root, args.sequence, args.passes, Path(folder))
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"sequence={result['sequence']} query_frames={result['frames']} "
          f"size={result['height']}x{result['width']} passes={args.passes} "
          f"cpu_cores={len(os.sched_getaffinity(0))} opencv_threads={cv2.getNumThreads()}")
    print(f"cpu_fps={result['cpu_fps']:.1f}")
    print(f"fps={result['fps']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
