"""`vad features`: one `(snippets, dim)` float32 `.npy` of snippet embeddings per video.

The output folder also holds `features.json` (the encoding and, per video, its frame and
snippet counts). A video whose `.npy` is already there is skipped, so an interrupted run
continues where it stopped; each file is written to `NAME.npy.part` and renamed when whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.vadclip.encoders import open_frame_encoder, source_features
from streams.sources import Source
from vad.config.scorers import SnippetEncoding
from vad.errors import VadError

META_FILE = "features.json"


def write_features(sources: list[Source], encoding: SnippetEncoding, out: Path,
                   device: torch.device, progress: bool = True) -> dict:
    names = [source.camera_id for source in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise VadError(f"several inputs are named {', '.join(duplicates)}: their features would "
                       "share a file; write each set to its own --out")
    meta = _read_meta(out, encoding)
    encoder = None
    for source in tqdm(sources, desc="videos", unit="video", disable=not progress):
        target = out / f"{source.camera_id}.npy"
        if target.is_file() and source.camera_id in meta["videos"]:
            continue  # done by an earlier run
        if encoder is None:
            encoder = open_frame_encoder(encoding.encoder, device, encoding.encoder_batch)
            meta["dim"] = encoder.dim
        features, frames = source_features(encoder, source, encoding, progress)
        part = target.with_name(target.name + ".part")
        with part.open("wb") as handle:
            np.save(handle, features)
        os.replace(part, target)
        meta["videos"][source.camera_id] = {"frames": frames, "snippets": len(features)}
        _write_meta(out, meta)
    return meta


def _read_meta(out: Path, encoding: SnippetEncoding) -> dict:
    wanted = encoding.model_dump(exclude={"encoder_batch"})
    path = out / META_FILE
    if not path.is_file():
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VadError(f"{out}: cannot create the folder ({exc.strerror})") from None
        return {"encoding": wanted, "videos": {}}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VadError(f"{path}: invalid JSON ({exc})") from None
    if meta.get("encoding") != wanted:
        raise VadError(f"{out}: holds features of another encoding ({meta.get('encoding')}); "
                       "write these to a new --out")
    return meta


def _write_meta(out: Path, meta: dict) -> None:
    part = out / (META_FILE + ".part")
    part.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(part, out / META_FILE)
