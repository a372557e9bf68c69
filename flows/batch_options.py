"""The fan-out choices of the batch and video flows, declared once for the flows and the CLI
(no Prefect import: `nst --help` stays fast)."""

from typing import Literal

FanOut = Literal["threads", "pool"]
VIDEO_DEPLOYMENT = "stylize-video/on-demand"  # the on-demand deployment of prefect.yaml
CHUNK_DEPLOYMENT = "stylize-chunk/chunk"  # the chunk deployment of prefect.yaml
