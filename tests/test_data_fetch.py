"""`vad data fetch`: a local HTTP server (Range requests, cut-short answers, failures) serves a
tiny archive in the official UCSD layout; fetch -> check -> convert -> `vad eval`."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, moving_square
from vad.cli import main
from vad.data import ucsd
from vad.data.ucsd import UcsdSubset
from vad.data.benchmarks import load_benchmark

TOP = "UCSD_Anomaly_Dataset.v1p2"
# The tiny archive: 2 train videos of 12 frames, 2 test videos of 12 frames (anomalous from
# frame 7, 1-based: the square turns big and fast), pixel masks for Test001 only (as in Ped1).
TINY = UcsdSubset("UCSDped2", train_videos=2, test_videos=2, train_frames=24, test_frames=24)
GT_M = """% ground truth, as in the official file
TestVideoFile = {};
TestVideoFile{end+1}.gt_frame = [7:12];
TestVideoFile{end+1}.gt_frame = [7:12];
"""


def _test_video() -> tuple[np.ndarray, np.ndarray]:
    slow, fast = moving_square(n=6, speed=2), moving_square(n=6, speed=6, side=20)
    masks = np.zeros((12, 64, 96), np.uint8)
    for t in range(6, 12):
        left = 4 + 6 * (t - 6)
        masks[t, 22:42, left:left + 20] = 255
    return np.concatenate([slow, fast]), masks


def build_official_tree(root: Path, skip: str | None = None) -> Path:
    """The official layout under root/TOP/UCSDped2 (TIFF frames, BMP masks, Test/UCSDped2.m)."""
    ped2 = root / TOP / "UCSDped2"
    folders = {f"Train/Train{i:03d}": (moving_square(n=12, speed=2), None) for i in (1, 2)}
    frames, masks = _test_video()
    folders.update({"Test/Test001": (frames, masks), "Test/Test002": (frames, None)})
    for name, (images, gt) in folders.items():
        if skip and name.startswith(skip):
            continue
        (ped2 / name).mkdir(parents=True)
        for i, image in enumerate(images):
            cv2.imwrite(str(ped2 / name / f"{i + 1:03d}.tif"), image)
        if gt is not None:
            (ped2 / f"{name}_gt").mkdir()
            for i, mask in enumerate(gt):
                cv2.imwrite(str(ped2 / f"{name}_gt" / f"{i + 1:03d}.bmp"), mask)
    (ped2 / "Test" / "UCSDped2.m").write_text(GT_M)
    # macOS metadata the real archive carries: must not count as a frame
    (ped2 / "Train" / "Train001" / "._001.tif").write_bytes(b"\x00\x05\x16\x07 not a tiff")
    (root / TOP / "README.txt").write_text("UCSD Anomaly Detection Dataset (tiny test copy)\n")
    return ped2


def tar_gz(tree: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tree / TOP, arcname=TOP)
    return buffer.getvalue()


class _ArchiveHandler(BaseHTTPRequestHandler):
    """GET with `Range: bytes=N-`; `server.cut_after` cuts the next answer short,
    `server.fail` answers with that status."""

    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        if server.fail:
            self.send_error(server.fail)
            return
        body, start = server.payload, 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut, server.cut_after = server.cut_after, None
        self.wfile.write(body[start:] if cut is None else body[start:start + cut])

    def log_message(self, *args):
        pass


@pytest.fixture
def archive_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveHandler)
    server.payload, server.cut_after, server.fail, server.ranges = b"", None, None, []
    server.url = f"http://127.0.0.1:{server.server_port}/data/UCSD_Anomaly_Dataset.tar.gz"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def official_tree(tmp_path_factory) -> Path:
    return build_official_tree(tmp_path_factory.mktemp("official"))


@pytest.fixture
def tiny_ped2(monkeypatch):
    """`vad data fetch ped2` expects the tiny archive's structure instead of the real one's."""
    monkeypatch.setitem(ucsd.SUBSETS, "ped2", TINY)


def fetch(server, tmp_path: Path, *extra: str) -> int:
    return main(["data", "fetch", "ped2", "--url", server.url, "--to", str(tmp_path / "ped2"),
                 "--cache", str(tmp_path / "cache"), "--no-progress", *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_fetch_convert_and_eval(archive_server, official_tree, tmp_path, tiny_ped2, capsys):
    archive_server.payload = tar_gz(official_tree.parents[1])
    assert fetch(archive_server, tmp_path) == 0
    target = tmp_path / "ped2"
    assert "ped2: " in capsys.readouterr().out
    meta = json.loads((target / "meta.json").read_text())
    assert meta["archive_sha256"] == hashlib.sha256(archive_server.payload).hexdigest()
    assert meta["source_url"] == archive_server.url and meta["fps"] == 10
    assert meta["train"] == {"01": {"frames": 12}, "02": {"frames": 12}}
    assert meta["test"]["02"] == {"frames": 12, "anomalous_intervals_1based": [[7, 12]]}
    assert sorted(p.name for p in (target / "train").iterdir()) == ["01.mp4", "02.mp4"]
    assert sorted(p.name for p in (target / "test_masks").iterdir()) == ["01.npz"]
    # the same labels and masks as reading the official layout directly
    official, converted = load_benchmark(official_tree), load_benchmark(target)
    assert [v.name for v in converted.test] == ["01", "02"]
    for ours, theirs in zip(converted.test, official.test):
        assert ours.labels.tolist() == theirs.labels.tolist() == [0] * 6 + [1] * 6
    masks = np.load(target / "test_masks" / "01.npz")["masks"]
    assert masks.dtype == np.uint8 and masks.shape == (12, 64, 96)
    assert np.array_equal(masks, official.test[0].load_masks()) and masks.max() == 1
    # one decoded frame per TIFF, the same picture up to H.264 at crf 18
    decoded = np.stack([f.image[..., 0] for f in converted.train.videos[0].open()])
    originals = np.stack([f.image[..., 0] for f in official.train.videos[0].open()])
    assert decoded.shape == originals.shape == (12, 64, 96)
    assert np.abs(decoded.astype(int) - originals).mean() < 2
    # `vad eval` runs on the result
    out = tmp_path / "eval"
    assert main(["eval", str(target), "--scorer", "frame-diff", "--out", str(out),
                 "--no-progress", "--set", "postprocess.smoothing_sigma=1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert sum(r["frames"] for r in report["per_video"]) == 24 and report["micro_auc"] > 0.9
    # idempotent: a second fetch neither downloads nor converts again
    requests = len(archive_server.ranges)
    assert fetch(archive_server, tmp_path) == 0 and len(archive_server.ranges) == requests


def test_interrupted_download_resumes(archive_server, official_tree, tmp_path, tiny_ped2,
                                      capsys):
    archive_server.payload = tar_gz(official_tree.parents[1])
    archive_server.cut_after = 1000
    assert fetch(archive_server, tmp_path) == 2
    line = one_line_error(capsys)
    assert f"stopped at 1,000 of {len(archive_server.payload):,} bytes" in line
    part = tmp_path / "cache" / "UCSD_Anomaly_Dataset.tar.gz.part"
    assert part.stat().st_size == 1000 and not (tmp_path / "ped2").exists()
    assert fetch(archive_server, tmp_path) == 0
    assert archive_server.ranges == [None, "bytes=1000-"]
    cached = tmp_path / "cache" / "UCSD_Anomaly_Dataset.tar.gz"
    assert cached.read_bytes() == archive_server.payload and not part.exists()
    assert (tmp_path / "ped2" / "meta.json").is_file()


def test_complete_partial_file_is_finished_without_download(archive_server, official_tree,
                                                            tmp_path, tiny_ped2):
    archive_server.payload = tar_gz(official_tree.parents[1])
    part = tmp_path / "cache" / "UCSD_Anomaly_Dataset.tar.gz.part"
    part.parent.mkdir()
    part.write_bytes(archive_server.payload)  # stopped just before the rename
    assert fetch(archive_server, tmp_path) == 0
    assert archive_server.ranges == [f"bytes={len(archive_server.payload)}-"]


def test_the_real_structure_is_the_default(archive_server, official_tree, tmp_path, capsys):
    archive_server.payload = tar_gz(official_tree.parents[1])
    assert fetch(archive_server, tmp_path) == 2
    line = one_line_error(capsys)
    assert "not the official UCSD archive (UCSDped2/Train: 2 TrainNNN folders, expected 16)" \
        in line and "delete it to download again" in line
    assert not (tmp_path / "ped2").exists()
    # the archive stays in the cache: a failed conversion does not download again
    assert (tmp_path / "cache" / "UCSD_Anomaly_Dataset.tar.gz").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".extract")]


def test_missing_folder_is_one_line_error(archive_server, tmp_path, tiny_ped2, capsys):
    tree = tmp_path / "tree"
    build_official_tree(tree, skip="Train/Train002")
    archive_server.payload = tar_gz(tree)
    assert fetch(archive_server, tmp_path) == 2
    assert "UCSDped2/Train: 1 TrainNNN folders, expected 2" in one_line_error(capsys)
    assert not (tmp_path / "ped2").exists()


def test_not_an_archive_and_http_failure_are_one_line_errors(archive_server, tmp_path,
                                                              tiny_ped2, capsys):
    archive_server.payload = b"<html><body>Moved</body></html>"
    assert fetch(archive_server, tmp_path) == 2
    assert "not a readable tar.gz archive (not a gzip file)" in one_line_error(capsys)
    archive_server.fail = 500
    assert main(["data", "fetch", "ped2", "--url", archive_server.url + "?again", "--to",
                 str(tmp_path / "other"), "--cache", str(tmp_path / "cache2"),
                 "--no-progress"]) == 2
    assert "HTTP 500" in one_line_error(capsys)


def test_unreachable_server_shows_the_bar_then_one_line_error(tmp_path, capsys):
    """What `make demo` shows without ../shared and without network."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveHandler)
    port = server.server_port
    server.server_close()  # nothing listens there any more
    assert main(["data", "fetch", "ped2", "--url", f"http://127.0.0.1:{port}/x.tar.gz",
                 "--to", str(tmp_path / "ped2"), "--cache", str(tmp_path / "cache")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("x.tar.gz: 0.00B")  # the progress bar, before connecting
    assert [line for line in lines if "error" in line] == [lines[-1]]
    assert lines[-1] == (f"error: http://127.0.0.1:{port}/x.tar.gz: download failed "
                         "([Errno 111] Connection refused)")


def test_path_traversal_is_refused(archive_server, tmp_path, tiny_ped2, capsys):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        evil = tarfile.TarInfo(f"{TOP}/UCSDped2/../../../evil.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    archive_server.payload = buffer.getvalue()
    assert fetch(archive_server, tmp_path) == 2
    assert "unsafe archive member" in one_line_error(capsys)
    assert not list(tmp_path.rglob("evil.txt"))


def test_existing_foreign_folder_is_not_overwritten(archive_server, tmp_path, capsys):
    (tmp_path / "ped2").mkdir()
    (tmp_path / "ped2" / "notes.txt").write_text("mine")
    assert fetch(archive_server, tmp_path, "--force") == 2
    assert "is not a converted dataset" in one_line_error(capsys)
    assert (tmp_path / "ped2" / "notes.txt").read_text() == "mine" and not archive_server.ranges


def test_official_ground_truth_syntax():
    assert ucsd.parse_ucsd_gt(GT_M + "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];") == \
        [[(7, 12)], [(7, 12)], [(5, 90), (140, 200)]]


def test_ped2_defaults_match_the_shared_copy(ped2_dir):
    meta = json.loads((ped2_dir / "meta.json").read_text())
    expected = ucsd.SUBSETS["ped2"]
    assert (len(meta["train"]), len(meta["test"])) == (expected.train_videos,
                                                       expected.test_videos)
    assert sum(v["frames"] for v in meta["train"].values()) == expected.train_frames
    assert sum(v["frames"] for v in meta["test"].values()) == expected.test_frames


def test_demo_rules_are_anomalyrulers(ped2_dir):
    committed = REPO / "configs" / "rules" / "ped2" / "rule_ped2.txt"
    assert committed.read_bytes() == (ped2_dir / "anomalyruler" / "rule_ped2.txt").read_bytes()


def test_yolox_nano_is_fetched_and_checked(tmp_path, capsys):
    """The describer's detector: a real ONNX export is accepted, anything else refused."""
    import shutil
    from functools import partial

    shared = Path(__file__).resolve().parents[2] / "shared" / "models" / "yolox_nano.onnx"
    if not shared.is_file():
        pytest.skip(f"no YOLOX-nano export to serve at {shared}")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(shared, served / "yolox_nano.onnx")
    (served / "bogus.onnx").write_bytes(b"not a model")
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        target = tmp_path / "models" / "yolox.onnx"
        assert main(["data", "fetch", "yolox-nano", "--to", str(target), "--no-progress",
                     "--set", f"data.yolox_url={base}/yolox_nano.onnx"]) == 0
        assert target.read_bytes() == shared.read_bytes()
        assert "reasoning.describer.model_path=" in capsys.readouterr().out
        bad = tmp_path / "models" / "bad.onnx"
        assert main(["data", "fetch", "yolox-nano", "--to", str(bad), "--no-progress",
                     "--set", f"data.yolox_url={base}/bogus.onnx"]) == 2
        assert "not a loadable ONNX model" in capsys.readouterr().err and not bad.exists()
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
