import pytest

from nst_video.tasks.plan import Chunk, chunk_shots, job_id, plan_chunks


def _covered(chunks):
    return [frame for c in chunks for frame in range(c.start, c.start + c.count)]


def test_chunks_cover_every_frame_once_with_warmup():
    chunks = plan_chunks(0, 100, 30, 4)
    assert _covered(chunks) == list(range(100))
    assert [(c.start, c.count, c.warmup) for c in chunks] == [
        (0, 30, 0),
        (30, 30, 4),
        (60, 30, 4),
        (90, 10, 4),
    ]
    assert chunks[1].first_decoded == 26 and chunks[1].name == "chunk_0001"


def test_boundaries_snap_to_nearby_scene_cuts_which_need_no_warmup():
    chunks = plan_chunks(0, 100, 30, 4, cuts=[27, 85])
    assert [c.start for c in chunks] == [0, 27, 57, 85]
    assert [c.warmup for c in chunks] == [0, 0, 4, 0]
    assert _covered(chunks) == list(range(100))


def test_warmup_never_crosses_a_cut_or_the_range_start():
    chunks = plan_chunks(10, 50, 20, 8, cuts=[28])
    # 10..28 (cut snapped), 28..48, 48..60: the chunk at 48 may warm up from 40.
    assert [(c.start, c.warmup) for c in chunks] == [(10, 0), (28, 0), (48, 8)]
    # A cut 7 frames before a boundary (too far to snap to) limits that chunk's warm-up.
    near_cut = plan_chunks(0, 60, 20, 8, cuts=[33])
    assert [(c.start, c.warmup) for c in near_cut] == [(0, 0), (20, 8), (40, 7)]


def test_warmup_stays_within_the_previous_chunk():
    chunks = plan_chunks(0, 12, 4, 8)
    assert [(c.start, c.warmup) for c in chunks] == [(0, 0), (4, 4), (8, 4)]


def test_invalid_plans_are_refused():
    with pytest.raises(ValueError):
        plan_chunks(0, 10, 0, 2)
    with pytest.raises(ValueError):
        plan_chunks(0, 10, 5, -1)


def test_job_id_is_deterministic_and_sensitive():
    a = job_id(source={"size": 1, "mtime": 2}, settings="abc", chunk_frames=48)
    assert a == job_id(chunk_frames=48, settings="abc", source={"mtime": 2, "size": 1})
    assert a != job_id(source={"size": 1, "mtime": 3}, settings="abc", chunk_frames=48)
    assert len(a) == 16


def test_a_chunk_needs_the_keyframe_of_its_shot_and_of_shots_starting_inside_it():
    starts = [10, 40, 70]
    assert chunk_shots(Chunk(0, 10, 20, 0), starts) == [10]
    assert chunk_shots(Chunk(1, 30, 20, 8), starts) == [10, 40]  # decoded from 22
    assert chunk_shots(Chunk(2, 40, 20, 0), starts) == [40]
    assert chunk_shots(Chunk(3, 60, 30, 8), starts) == [40, 70]
