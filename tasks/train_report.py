"""The training's loss curve as a small PNG embedded in markdown (a Prefect artifact).

Drawn with PIL (no plotting library): the total loss on a log scale against the step, with
the first and last values written on the plot. Markdown with a data URI shows in the UI
with no file server, like tasks/report.py's preview.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 480, 240, 36


def _scaled(curve: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Plot coordinates of (step, loss) points: steps left to right, log10(loss) bottom up."""
    steps = [p[0] for p in curve]
    logs = [math.log10(max(p[1], 1e-12)) for p in curve]
    low, high = min(logs), max(logs)
    first, last = steps[0], steps[-1]
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    return [
        (
            MARGIN + inner_w * (s - first) / max(last - first, 1),
            HEIGHT - MARGIN - inner_h * (v - low) / max(high - low, 1e-9),
        )
        for s, v in zip(steps, logs, strict=True)
    ]


def loss_curve_png(curve: Sequence[Sequence[float]]) -> bytes:
    """A PNG of `curve`, [step, loss] pairs in step order (at least one)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN), outline="gray")
    points = _scaled(curve)
    if len(points) > 1:
        draw.line(points, fill="navy", width=2)
    (first_step, first_loss), (last_step, last_loss) = curve[0], curve[-1]
    draw.text((MARGIN, 8), f"loss (log scale) {first_loss:.4g} -> {last_loss:.4g}", fill="black")
    draw.text((MARGIN, HEIGHT - MARGIN + 8), f"step {first_step:g}", fill="black")
    draw.text((WIDTH - MARGIN - 60, HEIGHT - MARGIN + 8), f"step {last_step:g}", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def loss_curve_markdown(curve: Sequence[Sequence[float]], caption: str) -> str:
    data = base64.b64encode(loss_curve_png(curve)).decode()
    return f"![{caption}](data:image/png;base64,{data})\n\n{caption}"
