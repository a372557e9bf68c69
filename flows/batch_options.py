"""The batch's fan-out choices, declared once for the flow and the CLI (no Prefect import:
`nst --help` stays fast)."""

from typing import Literal

FanOut = Literal["threads", "pool"]
VIDEO_DEPLOYMENT = "stylize-video/on-demand"  # the on-demand deployment of prefect.yaml
