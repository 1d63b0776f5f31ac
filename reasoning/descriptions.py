"""Per-video description files: one `.txt` per video, line i = the description of frame i.

Files are keyed by their whole stem (`test_01_0014.txt` -> `test_01_0014`) and matched to
video names afterwards: a file belongs to video `V` when its stem is `V` or ends with
`_V` / `-V` (`test_01_0014` is video `01_0014`; `abnormal_scene_1_scenario_2` is never
collapsed with `abnormal_scene_3_scenario_2`). A file that fits two videos, or two files
that fit one video, is an error, never a silent choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from vad.errors import VadError


def read_descriptions(directory: str | Path) -> dict[str, list[str]]:
    """`{file stem: lines}` of every `.txt` in `directory` (rule files are skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VadError(f"{directory}: not a directory of description files")
    videos = {path.stem: path.read_text().splitlines()
              for path in sorted(directory.glob("*.txt"))
              if not path.stem.lower().startswith("rule")}
    if not videos:
        raise VadError(f"{directory}: no description files (*.txt, one line per frame)")
    return videos


def stem_fits(stem: str, video: str) -> bool:
    """`stem` names `video`: equal, or `video` after a `_`/`-` separator."""
    return stem == video or (stem.endswith(video) and stem[-len(video) - 1] in "_-")


def match_videos(stems: Iterable[str], videos: Iterable[str],
                 where: str = "descriptions") -> dict[str, str]:
    """`{video: stem}` for the videos that have a file; ambiguity is a `VadError`."""
    videos = list(dict.fromkeys(videos))
    matched: dict[str, str] = {}
    for stem in stems:
        fits = [v for v in videos if stem_fits(stem, v)]
        exact = [v for v in fits if v == stem]
        fits = exact or fits
        if len(fits) > 1:
            raise VadError(f"{where}: {stem}.txt fits several videos ({', '.join(fits)}); "
                           "name the file after exactly one")
        if fits:
            video = fits[0]
            if video in matched:
                raise VadError(f"{where}: two description files for video {video} "
                               f"({matched[video]}.txt, {stem}.txt)")
            matched[video] = stem
    return matched


def descriptions_for(descriptions: dict[str, list[str]], videos: Iterable[str],
                     where: str = "descriptions") -> dict[str, list[str]]:
    """The lines of every video in `videos`; a video without a file is a `VadError`."""
    videos = list(videos)
    matched = match_videos(descriptions, videos, where)
    missing = [v for v in videos if v not in matched]
    if missing:
        raise VadError(f"{where}: no descriptions for labelled videos {', '.join(missing)} "
                       f"(files are matched by name: <prefix>_<video>.txt or <video>.txt)")
    return {video: descriptions[matched[video]] for video in videos}


def write_descriptions(directory: str | Path, video: str, lines: Sequence[str],
                       prefix: str = "test") -> Path:
    path = Path(directory) / f"{prefix}_{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    return path
