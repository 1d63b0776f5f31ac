"""Direction, place and pace read from a sentence in plain English image terms.

Sentence embeddings cannot tell "from left to right" from "from right to left" (measured:
cosine 0.733 vs 0.734 to "moves from left to right") nor "faster" from "slower", so the
`vad:` answerer reads these three attributes with a small grammar of generic spatial and
comparative words (left/right, top/bottom, towards/away from the camera, faster/slower/same
pace/still), the same grammar for the options and for its own evidence. Image conventions:
x grows rightwards, y downwards; towards the camera is down the view (a surveillance camera
looks down on the scene), away from it is up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STILL, SLOWER, SAME, FASTER = range(4)

_PLACES = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "upper": (0, -1),
           "background": (0, -1), "bottom": (0, 1), "lower": (0, 1), "foreground": (0, 1),
           "center": (0, 0), "centre": (0, 0), "middle": (0, 0)}
_PLACE = "|".join(_PLACES)

# Direction patterns, most specific first; each match is blanked before the next pattern
# and before places are read, so "from left to right" is not also read as a place.
_DIRECTIONS: list[tuple[re.Pattern, object]] = [
    (re.compile(rf"\bfrom\b(?:\W+\w+){{0,4}}?\W+({_PLACE})\b(?:\W+\w+){{0,4}}?\W+"
                rf"(?:to|towards?|into)\b(?:\W+\w+){{0,2}}?\W+({_PLACE})\b"), "from-to"),
    (re.compile(rf"\b({_PLACE})\W+to\W+(?:the\W+)?({_PLACE})\b"), "from-to"),
    (re.compile(r"\b(up|down)\w*\s+and\s+to\s+the\s+(left|right)\b"), "diagonal"),
    (re.compile(r"\b(?:towards?|approach\w*|closer\s+to)\s+(?:the\s+)?"
                r"(?:camera|viewer|observer|foreground)\b"), (0, 1)),
    (re.compile(r"\baway\s+from\s+(?:the\s+)?(?:camera|viewer|observer)\b"
                r"|\binto\s+the\s+(?:distance|background)\b"), (0, -1)),
    (re.compile(r"\b(left|right)wards?\b"), "toward"),
    # "to the left" is a direction, "to the left of the bench" a place; "towards the bottom
    # of the frame" a direction again.
    (re.compile(r"\b(?:to(?:wards?)?|mov\w*|go\w*|head\w*|rid\w*|walk\w*|driv\w*|travel\w*|"
                r"run\w*|turn\w*)\s+(?:to(?:wards?)?\s+)?(?:the\s+)?(left|right|top|bottom)\b"
                r"(?!\s+of\s+(?!the\s+(?:frame|view|screen|image|picture|scene|video)\b))"),
     "toward"),
    (re.compile(r"\bupwards?\b|\bup\s+(?:the\s+)?(?:frame|screen|view|image|picture)\b"),
     (0, -1)),
    (re.compile(r"\bdownwards?\b|\bdown\s+(?:the\s+)?(?:frame|screen|view|image|picture)\b"),
     (0, 1)),
]

_SAME = re.compile(r"\b(?:(?:the\s+)?same|similar|comparable|normal|usual|ordinary|regular|"
                   r"walking|steady)\s+(?:pace|speed)\b|\bas\s+(?:fast|quickly)\s+as\b"
                   r"|\bkeeps?\s+pace\b")
_STILL = re.compile(r"\b(?:stationary|motionless|immobile|not\s+moving|does\s+not\s+move|"
                    r"doesn't\s+move|stands?\s+still|standing\s+still|stays?\s+still|"
                    r"remains?\s+still|stopped|parked|at\s+rest)\b")
_SLOWER = re.compile(r"\bslow(?:er|ly|s|ing)?\b")
_FASTER = re.compile(r"\b(?:faster|quicker|quickly|rapid(?:ly)?|fast|speeding|speeds?\s+"
                     r"(?:past|through|by|along|across)|high\s+speed|racing|rushing|dashing|"
                     r"zooming)\b")
_PACES = ((_SAME, SAME), (_STILL, STILL), (_SLOWER, SLOWER), (_FASTER, FASTER))

_X_WORDS = {"left": 1 / 6, "right": 5 / 6}
_Y_WORDS = {"top": 1 / 6, "upper": 1 / 6, "background": 1 / 6, "bottom": 5 / 6,
            "lower": 5 / 6, "foreground": 5 / 6}
_Y_SIDES = re.compile(r"\b(far|near)\s+(?:side|end|edge)\b")
_MIDDLE = re.compile(r"\b(?:center|centre|middle)\b")


@dataclass(frozen=True)
class Attributes:
    direction: tuple[float, float] | None = None  # unit vector
    x: float | None = None  # place, fractions of the frame
    y: float | None = None
    pace: int | None = None  # STILL, SLOWER, SAME or FASTER

    @property
    def empty(self) -> bool:
        return self.direction is None and self.x is None and self.y is None \
            and self.pace is None


def read_attributes(text: str) -> Attributes:
    text = " " + text.lower().replace("-", " ") + " "
    direction, text = _read_direction(text)
    pace, text = _read_pace(text)
    x, y = _read_place(text)
    return Attributes(direction, x, y, pace)


def _blank(text: str, match: re.Match) -> str:
    return text[:match.start()] + " " * (match.end() - match.start()) + text[match.end():]


def _read_direction(text: str) -> tuple[tuple[float, float] | None, str]:
    dx = dy = 0.0
    for pattern, kind in _DIRECTIONS:
        while (match := pattern.search(text)) is not None:
            if kind == "from-to":
                (ax, ay), (bx, by) = _PLACES[match.group(1)], _PLACES[match.group(2)]
                vector = (bx - ax, by - ay)
            elif kind == "diagonal":
                vector = (1 if match.group(2) == "right" else -1,
                          1 if match.group(1) == "down" else -1)
            elif kind == "toward":
                vector = _PLACES[match.group(1)]
            else:
                vector = kind
            dx, dy = dx + vector[0], dy + vector[1]
            text = _blank(text, match)
    norm = (dx * dx + dy * dy) ** 0.5
    return ((dx / norm, dy / norm) if norm > 0 else None), text


def _read_pace(text: str) -> tuple[int | None, str]:
    found = set()
    for pattern, pace in _PACES:
        while (match := pattern.search(text)) is not None:
            found.add(pace)
            text = _blank(text, match)
    return (found.pop() if len(found) == 1 else None), text


def _read_place(text: str) -> tuple[float | None, float | None]:
    words = re.findall(r"[a-z]+", _Y_SIDES.sub(lambda m: "top" if m.group(1) == "far"
                                               else "bottom", text))
    xs = [_X_WORDS[w] for w in words if w in _X_WORDS]
    ys = [_Y_WORDS[w] for w in words if w in _Y_WORDS]
    x = sum(xs) / len(xs) if xs else None
    y = sum(ys) / len(ys) if ys else None
    if _MIDDLE.search(text):  # "middle-left": the middle row; "the centre": both
        if x is None:
            x = 0.5
        if y is None:
            y = 0.5
    return x, y


def agreement(option: Attributes, direction: tuple[float, float] | None,
              region: tuple[float, float] | None, pace: int | None) -> float | None:
    """Mean agreement (-1..1) of what the option says with the evidence, over the
    attributes both have; None when they share none."""
    parts = []
    if option.direction is not None and direction is not None:
        parts.append(option.direction[0] * direction[0] + option.direction[1] * direction[1])
    if region is not None:
        axes = [1 - 3 * abs(said - seen) for said, seen in ((option.x, region[0]),
                                                           (option.y, region[1]))
                if said is not None]
        if axes:
            parts.append(max(-1.0, min(1.0, sum(axes) / len(axes))))
    if option.pace is not None and pace is not None:
        parts.append(max(-1.0, 1.0 - abs(option.pace - pace)))
    return sum(parts) / len(parts) if parts else None
