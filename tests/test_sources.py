import numpy as np
import pytest

from conftest import moving_square, write_video
from streams.sources import FolderSource, StreamSource, open_source, read_frames
from streams.windows import ClipWindower, preprocess
from vad.errors import SourceError
from vad.types import Frame


def test_video_file_frames_and_timestamps(tmp_path):
    frames = moving_square(n=12)
    source = open_source(write_video(tmp_path / "cam.mp4", frames))
    decoded = list(source)
    assert source.camera_id == "cam" and len(source) == 12
    assert [f.index for f in decoded] == list(range(12))
    assert decoded[3].timestamp == pytest.approx(0.3)
    gray = preprocess(decoded[5].image, None, grayscale=True) * 255
    assert np.abs(gray - frames[5]).mean() < 4  # lossy codec, same picture


def test_random_access_matches_sequential(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_square(n=10))
    sequential = [f.image for f in open_source(path)]
    picked = read_frames(path, [7, 2])
    assert np.abs(picked[0].astype(int) - sequential[7]).max() <= 2
    assert np.abs(picked[1].astype(int) - sequential[2]).max() <= 2


def test_folder_source_natural_order(tmp_path):
    import cv2

    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), i * 10, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_source(tmp_path)
    assert isinstance(source, FolderSource)
    assert [int(f.image[0, 0, 0]) for f in source] == [10, 20, 100]


@pytest.mark.parametrize("name, content, reason", [
    ("missing.mp4", None, "no such file"),
    ("empty.mp4", b"", "empty file"),
    ("garbage.mp4", b"\x00not a video at all" * 100, "not a readable video"),
    ("clip.txt", b"hello", "unsupported file type"),
])
def test_bad_input_gives_one_clear_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        list(open_source(path))
    assert str(path) in str(err.value) and reason in str(err.value)


def test_damaged_packets_cost_only_their_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_square(n=60))
    data = bytearray(path.read_bytes())
    # Junk over the middle of the media data; the index (moov) at the end stays intact.
    start, end = len(data) * 2 // 5, len(data) * 3 // 5
    data[start:end] = np.random.default_rng(1).integers(0, 256, end - start, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    frames = list(open_source(path))
    assert 10 < len(frames) <= 60
    assert frames[0].image.shape == (64, 96, 3)


def test_truncated_stream_file_keeps_frames_before_the_cut(tmp_path):
    path = write_video(tmp_path / "v.ts", moving_square(n=60))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    frames = list(open_source(path))
    assert 5 < len(frames) < 60
    assert [f.index for f in frames] == list(range(len(frames)))


def test_stream_urls_choose_stream_source():
    source = open_source("rtsp://127.0.0.1:8554/cam-1")
    assert isinstance(source, StreamSource) and source.camera_id == "127.0.0.1_8554_cam-1"


def _frames(n):
    return [Frame("c", i, i / 10, np.full((4, 6), i, np.uint8)) for i in range(n)]


def test_windower_scores_every_frame_once_after_context():
    windower = ClipWindower(context=2, batch=3, size=(2, 3), grayscale=True)
    clips = [c for c in map(windower.push, _frames(10)) if c is not None]
    clips.append(windower.flush())
    targets = np.concatenate([c.target_indices for c in clips])
    assert targets.tolist() == list(range(2, 10))
    assert all(c.context == 2 for c in clips)
    assert [len(c.frames) for c in clips] == [5, 5, 4]
    assert clips[1].indices.tolist() == [3, 4, 5, 6, 7]
    assert clips[0].frames.shape[1:] == (2, 3)
    assert windower.flush() is None


def test_preprocess_colour_and_size():
    image = np.zeros((10, 20, 3), np.uint8)
    image[..., 2] = 255
    out = preprocess(image, (5, 10), grayscale=False)
    assert out.shape == (5, 10, 3) and out.dtype == np.float32 and out[..., 2].max() == 1.0
    assert preprocess(image, None, grayscale=True).shape == (10, 20)
