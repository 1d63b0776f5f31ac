"""How live streams (rtsp://, rtsps://, http(s):// MJPEG or video, rtmp://) are read: timeouts,
reconnection, stall detection and the frame rate scored (docs/cameras.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vad.config.base import Section


class LiveSourceConfig(Section):
    """Reading a live camera stream: it is reopened whenever it drops, stalls or ends."""

    detect_fps: float | None = Field(None, gt=0, description=(
        "frames/s scored; the stream is decoded in full and frames in between are dropped "
        "(Frigate's detect fps); none = every frame"))
    transport: Literal["tcp", "udp"] = Field("tcp", description=(
        "RTSP transport: tcp survives lossy networks, udp has less latency"))
    timestamps: Literal["stream", "wall"] = Field("stream", description=(
        "frame times: stream = the stream's own clock (presentation times) anchored to the "
        "wall clock at each connection; wall = the wall clock when a frame is decoded"))
    probe_s: float = Field(1.0, gt=0, description=(
        "stream read on opening to learn its format (ffmpeg analyzeduration): shorter opens "
        "faster"))
    open_timeout_s: float = Field(10.0, gt=0, description=(
        "a connection attempt that has not opened the stream by then is abandoned"))
    stall_timeout_s: float = Field(10.0, gt=0, description=(
        "no frame for this long on an open stream: it is stalled and is reopened"))
    reconnect_initial_s: float = Field(1.0, gt=0, description=(
        "wait before the first reconnection attempt; doubles (reconnect_factor) per failure"))
    reconnect_max_s: float = Field(30.0, gt=0, description="longest wait between attempts")
    reconnect_factor: float = Field(2.0, ge=1, description="exponential backoff factor")
    reconnect_jitter: float = Field(0.2, ge=0, le=1, description=(
        "each wait is scaled by a random factor in [1 - jitter, 1 + jitter], so that cameras "
        "behind one failed switch do not reconnect in lockstep"))
    offline_after_s: float = Field(30.0, gt=0, description=(
        "without frames for this long a camera is offline, and a camera-offline alert is "
        "stored (updated until it is back)"))
    give_up_after_s: float | None = Field(None, gt=0, description=(
        "stop reconnecting after this long without frames: the camera ends with an error; "
        "none = keep trying forever"))

    @model_validator(mode="after")
    def _backoff_bounds(self) -> LiveSourceConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self
