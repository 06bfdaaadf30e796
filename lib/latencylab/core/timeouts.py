"""Per-phase time limits of a request (a study's `timeouts:`), defined once for studies and backends."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Timeouts(BaseModel):
    """Per-phase limits in seconds; the first byte may wait for a slow model load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_s: float = Field(10.0, gt=0)
    first_byte_s: float = Field(300.0, gt=0)
    between_chunks_s: float = Field(60.0, gt=0)
    total_s: float = Field(900.0, gt=0)
