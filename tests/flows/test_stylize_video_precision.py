"""The precision of a video run: settings and job id keep "auto", the manifest and the chunks
record what "auto" meant where they ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nst_video.flows.stylize_video import precision_used, stylize_video
from nst_video.nst_core.precision import resolve_precision
from nst_video.nst_core.settings import make_video_settings
from nst_video.tasks.stylize import ChunkResult

FAST = make_video_settings(size=48, first_iterations=4, iterations=2, tolerance=0.0)


def _chunk(index: int, precision: str | None) -> ChunkResult:
    nan = float("nan")
    return ChunkResult(index, 0, 1, 0, 1, 0.1, nan, nan, nan, "s.mp4", precision=precision)


def test_the_manifest_records_the_resolved_precision(prefect_api_url, basic, assets, tmp_path):
    style = str(assets / "styles" / "starry_night.jpg")
    out = tmp_path / "styled.mp4"
    manifest = stylize_video(
        str(basic), [style], str(out), FAST, chunk_frames=2, overlap=0, max_frames=4,
        work_dir=str(tmp_path / "work"),
    )  # fmt: skip
    resolved = resolve_precision("auto")
    assert manifest["settings"]["precision"] == "auto"
    assert manifest["precision"] == resolved != "auto"
    assert [c["precision"] for c in manifest["chunks"]] == [resolved, resolved]
    assert json.loads(Path(f"{out}.json").read_text())["precision"] == resolved


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (["bfloat16", "bfloat16"], "bfloat16"),
        (["float32", None], "float32"),  # a marker of an older version records none
        (["float32", "bfloat16"], "mixed"),  # resumed on a machine that resolved otherwise
        ([None], None),
    ],
)
def test_precision_used_summarizes_the_chunks(recorded, expected):
    results = [_chunk(i, p) for i, p in enumerate(recorded)]
    assert precision_used(results) == expected
