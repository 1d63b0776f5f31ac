"""What the dashboard is told at launch: `vad dashboard` passes the effective config as JSON in
an environment variable, because `streamlit run` owns the command line and AppTest has none."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from vad.config import VadConfig, validated
from vad.config.auth import DashboardAuthConfig
from vad.config.outputs import OutputsConfig
from vad.config.sections import KafkaConfig, StoreConfig
from vad.errors import VadError
from vad.stores import redacted

ENV_CONFIG = "VAD_DASHBOARD_CONFIG"


@dataclass(frozen=True)
class DashboardSettings:
    store: StoreConfig
    threshold: float  # drawn on the score timelines (fused, normalised score units)
    refresh: float  # seconds between feed refreshes; the camera overview: 3x this
    feed_rows: int
    auth: DashboardAuthConfig = field(default_factory=DashboardAuthConfig)
    host: str = "127.0.0.1"  # the address `vad dashboard` was told to bind
    # Where acknowledgements are published, as the pipeline publishes alerts.
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)

    @property
    def store_label(self) -> str:
        """The store URL as it may be shown: without its password."""
        return redacted(self.store.url)

    @classmethod
    def from_config(cls, config: VadConfig) -> DashboardSettings:
        dashboard = config.dashboard
        threshold = config.events.threshold if dashboard.threshold is None else dashboard.threshold
        return cls(config.store, threshold, dashboard.refresh, dashboard.feed_rows,
                   dashboard.auth, dashboard.host, config.outputs, config.kafka)

    @staticmethod
    def to_env(config: VadConfig) -> dict[str, str]:
        return {ENV_CONFIG: config.model_dump_json()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DashboardSettings:
        text = environ.get(ENV_CONFIG)
        if text is None:
            return cls.from_config(VadConfig())
        try:
            return cls.from_config(validated(VadConfig, _json(text), ENV_CONFIG))
        except VadError:
            raise
        except ValueError:
            raise VadError(f"{ENV_CONFIG}: not the JSON of a config") from None


def _json(text: str):
    import json

    return json.loads(text)
