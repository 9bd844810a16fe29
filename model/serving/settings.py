"""Worker settings from the environment (and `.env`). Every variable is listed in .env.example."""

from __future__ import annotations

import os
import socket

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", protected_namespaces=())

    # The contract's variables.
    redis_url: str = "redis://localhost:6379/0"
    model_preset: str = "tiny"
    model_path: str | None = None
    load_in_8bit: bool = False
    device: str = "auto"

    # Serving.
    worker_name: str = Field(default_factory=lambda: _default_name())
    worker_max_batch: int = Field(16, ge=1, description="requests decoded together")
    worker_max_tokens_in_flight: int = Field(
        32768, ge=64, description="KV cache cells per layer the batch may reach: rows x padded width, answers included")
    worker_max_input_tokens: int = Field(3072, ge=64, description="dialogs are trimmed (oldest turns first) to this")
    worker_max_images: int = Field(4, ge=1, description="images per job after trimming")
    worker_max_new_tokens: int = Field(1024, ge=1, description="cap on a job's max_new_tokens")
    worker_default_max_new_tokens: int = Field(256, ge=1)
    worker_wrap_up: float = Field(0.85, ge=0, lt=1, description="finish at a sentence end after this share of max_new_tokens")
    worker_delta_interval_s: float = Field(0.15, ge=0, description="deltas are coalesced for this long")
    worker_reply_ttl_s: int = Field(3600, ge=10, description="reply streams expire after this")
    worker_job_retention_s: float = Field(3600, ge=0, description="answered jobs stay in the stream this long")
    worker_image_cache: int = Field(256, ge=0, description="adapter outputs kept by image key (LRU)")

    # Reliability.
    # A lease shorter than a second cannot outlive one decode step plus the 0.25 s housekeeping cadence.
    worker_visibility_timeout_s: float = Field(
        60.0, ge=1, description="lease length: a job whose worker has not renewed it this long is taken over")
    worker_claim_refresh_s: float = Field(10.0, gt=0, description="how often live leases are renewed")
    worker_max_deliveries: int = Field(3, ge=1, description="deliveries before a job goes to the dead-letter stream")
    worker_drain_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, time to finish jobs in flight")
    worker_heartbeat_ttl_s: int = Field(15, ge=2)
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 = off")
    worker_metrics_host: str = Field("127.0.0.1", description="address /metrics binds; 0.0.0.0 inside a private network")

    @model_validator(mode="after")
    def _renewal_well_inside_the_lease(self):
        # A lease renewed every R seconds survives a pause (a slow step, a GC, a busy machine) of V - R; with
        # R <= V/3 that is at least two renewal periods, and a worker that misses one renewal keeps its jobs.
        if self.worker_claim_refresh_s * 3 > self.worker_visibility_timeout_s:
            raise ValueError(
                f"WORKER_CLAIM_REFRESH_S ({self.worker_claim_refresh_s:g}) must be at most a third of "
                f"WORKER_VISIBILITY_TIMEOUT_S ({self.worker_visibility_timeout_s:g}): leases would run out "
                "between renewals and live jobs would be taken over")
        return self

    @field_validator("model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value):
        return value or None  # MODEL_PATH= in a copied .env.example means "no path"

    @field_validator("worker_name", mode="before")
    @classmethod
    def _empty_name_is_default(cls, value):
        return value or _default_name()
