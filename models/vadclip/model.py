"""The VadCLIP adapter (Wu et al., AAAI 2024) over frozen snippet embeddings, and its losses.

Implemented from the paper and its code (nwpu-zxr/VadCLIP `src/model.py`,
`src/utils/layers.py`, `src/*_train.py`):

* a learned position embedding per snippet, then the local module: a CLIP-style transformer
  whose attention is restricted to windows of `window` snippets;
* the global module: two 2-layer GCNs (width -> width/2 -> width/2, residual), one on the
  similarity adjacency (cosine similarity, zeroed at or below a threshold, row softmax), one
  on the distance adjacency exp(-|i - j| / e); concatenated and projected back to the width;
* the C-branch: `classifier(x + mlp(x))`, one logit per snippet;
* the A-branch: the class embeddings (from the prompt text encoder) plus the visual prompt,
  the C-branch-weighted sum of the snippet features (normalised), then an MLP; the logits are
  cosine similarities of snippets and classes / 0.07.

Sequences are padded to a common length in a batch; `valid` marks the real snippets. Unlike
upstream, padding never reaches a real snippet: attention, both adjacencies and the visual
prompt ignore it, so a padded video scores as it would alone (upstream lets the zero rows of
its 256-row training windows into attention and into the distance graph).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vad.config.scorers import VadCLIPParams

LOGIT_SCALE = 1 / 0.07  # upstream's fixed temperature of the A-branch
TOPK_DIVISOR = 16  # MIL top-k: k = length // 16 + 1 (upstream's CLAS2 / CLASM)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _mlp(width: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)),
                                      ("gelu", QuickGELU()),
                                      ("c_proj", nn.Linear(width * 4, width))]))


def window_mask(length: int, window: int, overlap: bool, device=None) -> torch.Tensor:
    """(length, length) bool, True where snippet i may attend to snippet j: both lie in one
    window. Windows of `window` snippets start every `window` snippets (disjoint blocks, the
    code's block-diagonal mask) or, with `overlap`, every window // 2 snippets."""
    stride = max(1, window // 2) if overlap else window
    starts = torch.arange(0, length, stride, device=device)
    positions = torch.arange(length, device=device)
    member = (positions[None] >= starts[:, None]) & (positions[None] < starts[:, None] + window)
    member = member.float()
    return (member.T @ member) > 0


def distance_adjacency(length: int, device=None) -> torch.Tensor:
    """exp(-|i - j| / e), (length, length); upstream builds it on CUDA only, this on any
    device."""
    positions = torch.arange(length, device=device, dtype=torch.float32)
    return torch.exp(-(positions[:, None] - positions[None]).abs() / math.e)


def similarity_adjacency(x: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, T, T): cosine similarity of the snippet features, values at or below `threshold`
    set to 0 (F.threshold, as upstream), then a softmax over each row's real snippets."""
    norm = x.norm(dim=-1, keepdim=True)
    cosine = (x @ x.transpose(1, 2)) / (norm @ norm.transpose(1, 2) + 1e-20)
    cosine = F.threshold(cosine, threshold, 0.0)
    pair = valid[:, :, None] & valid[:, None, :]
    return torch.softmax(cosine.masked_fill(~pair, float("-inf")), dim=-1).nan_to_num(0.0)


class GraphConvolution(nn.Module):
    """adj @ (x W) + residual(x); the residual is a width-5 temporal convolution when the
    width changes, else the identity (upstream's GraphConvolution, no bias)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)
        self.residual = (nn.Conv1d(in_features, out_features, kernel_size=5, padding=2)
                         if in_features != out_features else None)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        out = adjacency @ (x @ self.weight)
        if self.residual is None:
            return out + x
        return out + self.residual(x.transpose(1, 2)).transpose(1, 2)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = _mlp(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=blocked)[0]
        return x + self.mlp(self.ln_2(x))


class LocalTransformer(nn.Module):
    """Transformer layers whose attention stays inside windows of snippets (and off padding)."""

    def __init__(self, config: VadCLIPParams):
        super().__init__()
        self.heads, self.window, self.overlap = config.heads, config.window, config.window_overlap
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(config.feature_dim, config.heads)
                                        for _ in range(config.layers)])

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        allowed = window_mask(t, self.window, self.overlap, x.device)[None] & valid[:, None, :]
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=x.device)  # padding: itself
        blocked = (~allowed).repeat_interleave(self.heads, dim=0)
        for block in self.resblocks:
            x = block(x, blocked)
        return x


@dataclass
class AdapterOutput:
    features: torch.Tensor  # (B, T, D) snippet features after the local and global modules
    logits: torch.Tensor  # (B, T) C-branch logits
    aligned: torch.Tensor | None  # (B, T, C) A-branch logits (None without a text branch)


class VadCLIPNet(nn.Module):
    def __init__(self, config: VadCLIPParams):
        super().__init__()
        width, half = config.feature_dim, config.feature_dim // 2
        self.threshold = config.similarity_threshold
        self.frame_position_embeddings = nn.Embedding(config.visual_length, width)
        nn.init.normal_(self.frame_position_embeddings.weight, std=0.01)
        self.temporal = LocalTransformer(config)
        self.gc1, self.gc2 = GraphConvolution(width, half), GraphConvolution(half, half)
        self.gc3, self.gc4 = GraphConvolution(width, half), GraphConvolution(half, half)
        self.linear = nn.Linear(width, width)
        self.gelu = QuickGELU()
        self.mlp1 = _mlp(width)  # on the class embeddings (A-branch)
        self.mlp2 = _mlp(width)  # on the snippet features (C-branch)
        self.classifier = nn.Linear(width, 1)

    def encode_video(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, D) snippet embeddings (T <= visual_length) -> adapted features."""
        t = x.shape[1]
        x = x + self.frame_position_embeddings.weight[:t]
        x = self.temporal(x, valid)
        x = torch.where(valid[..., None], x, 0.0)  # the convolutional residuals see zeros
        similarity = similarity_adjacency(x, valid, self.threshold)
        pair = (valid[:, :, None] & valid[:, None, :]).float()
        distance = distance_adjacency(t, x.device) * pair
        x1 = self.gelu(self.gc2(self.gelu(self.gc1(x, similarity)), similarity))
        x2 = self.gelu(self.gc4(self.gelu(self.gc3(x, distance)), distance))
        return self.linear(torch.cat([x1, x2], dim=-1))

    def forward(self, x: torch.Tensor, valid: torch.Tensor,
                text: torch.Tensor | None = None) -> AdapterOutput:
        """`text`: (C, D) class embeddings from the prompt encoder, or None (C-branch only)."""
        features = self.encode_video(x, valid)
        logits = self.classifier(features + self.mlp2(features))[..., 0]
        if text is None:
            return AdapterOutput(features, logits, None)
        weights = torch.where(valid, logits, 0.0)  # the raw logits weight the visual prompt
        prompt = (weights[:, None, :] @ features)  # (B, 1, D)
        prompt = prompt / prompt.norm(dim=-1, keepdim=True)
        classes = text[None] + prompt  # (B, C, D)
        classes = classes + self.mlp1(classes)
        visual = features / features.norm(dim=-1, keepdim=True)
        classes = classes / classes.norm(dim=-1, keepdim=True)
        return AdapterOutput(features, logits, visual @ classes.transpose(1, 2) * LOGIT_SCALE)


# --- losses ---------------------------------------------------------------------------------

def topk_mean(values: torch.Tensor, length: int) -> torch.Tensor:
    """MIL top-k: the mean of the k = length // 16 + 1 largest of values[:length] along time
    (per column when values is (T, C))."""
    return values[:length].topk(length // TOPK_DIVISOR + 1, dim=0).values.mean(dim=0)


def binary_mil_loss(logits: torch.Tensor, lengths: torch.Tensor,
                    anomalous: torch.Tensor) -> torch.Tensor:
    """C-branch: BCE of each video's top-k mean probability against its video label."""
    probs = torch.sigmoid(logits)
    pooled = torch.stack([topk_mean(p, int(n)) for p, n in zip(probs, lengths)])
    return F.binary_cross_entropy(pooled, anomalous.float())


def align_mil_loss(aligned: torch.Tensor, lengths: torch.Tensor,
                   targets: torch.Tensor) -> torch.Tensor:
    """A-branch MIL-Align: per class the top-k mean similarity logit, then cross-entropy
    against the video's classes (multi-hot, normalised to sum 1)."""
    pooled = torch.stack([topk_mean(a, int(n)) for a, n in zip(aligned, lengths)])
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(pooled, dim=1)).sum(dim=1).mean()


def contrastive_text_loss(text: torch.Tensor) -> torch.Tensor:
    """Mean |cosine| between the normal class embedding and each anomaly class's: pushes the
    anomaly classes away from normal."""
    text = text / text.norm(dim=-1, keepdim=True)
    return (text[1:] @ text[0]).abs().mean()
