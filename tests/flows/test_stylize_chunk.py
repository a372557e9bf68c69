"""What a video run reads back from a chunk's run on a pool: the marker it staged, or one
clear error naming the chunk, the run and why."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Failed

from nst_video.flows.stylize_chunk import ChunkRunError, _result
from nst_video.nst_core.size import Size
from nst_video.tasks.plan import Chunk
from nst_video.tasks.staging import Staging, upload
from nst_video.tasks.stylize import ChunkResult, finished_chunk, segment_uri, write_marker

CHUNK, SIZE = Chunk(2, 6, 3, 1), Size(48, 36)


def _run(state) -> FlowRun:
    return FlowRun(name="brave-fox", flow_id=uuid4(), state=state)


def test_a_failed_chunk_run_is_one_line_naming_the_chunk_and_the_reason(tmp_path):
    staging = Staging(str(tmp_path / "job"))
    with pytest.raises(ChunkRunError) as caught:
        _result(CHUNK, staging, SIZE, _run(Failed(message="out of\nmemory")))
    assert str(caught.value) == "chunk_0002: flow run brave-fox ended Failed: out of memory"
    with pytest.raises(ChunkRunError, match="ended Completed: no completion marker in staging$"):
        _result(CHUNK, staging, SIZE, _run(Completed()))


def test_a_completed_chunk_run_gives_the_result_its_marker_records(tmp_path):
    staging = Staging(str(tmp_path / "job"))
    segment = segment_uri(staging, CHUNK)
    Path(segment).parent.mkdir(parents=True)
    Path(segment).write_bytes(b"segment")
    made = ChunkResult(2, 6, 3, 1, 9, 1.5, 0.5, 0.2, 0.3, segment, processing=SIZE.as_list())
    write_marker(made, upload)
    assert _result(CHUNK, staging, SIZE, _run(Completed())) == made
    assert finished_chunk(segment, SIZE).resumed  # found made; the run made it
