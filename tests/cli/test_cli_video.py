"""`nst video` on inputs that must fail cleanly, before any Prefect or TensorFlow start-up."""

from __future__ import annotations

import pytest

from nst_video.nst_cli.main import main

FAST = ["--size", "32", "--first-iterations", "3", "--iterations", "1", "--json"]


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def style(assets):
    return assets / "styles" / "starry_night.jpg"


@pytest.mark.parametrize(
    ("clip", "reason"),
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("png_as_mp4", "not a video"),
        ("truncated", "truncated or corrupt"),
        ("audio_only", "no video stream"),
    ],
)
def test_bad_inputs_fail_on_one_line(clip, reason, request, media, style, tmp_path, capsys):
    if clip == "missing":
        source = tmp_path / "missing.mp4"
    elif clip == "empty":
        source = tmp_path / "empty.mp4"
        source.write_bytes(b"")
    else:
        source = request.getfixturevalue(clip)
    out = tmp_path / "out.mp4"
    code, _, err = _run(["video", source, style, "-o", out, *FAST], capsys)
    assert code == 1
    assert err.count("\n") == 1 and source.name in err and reason in err, err
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing_folder", "under_a_file"])
def test_unwritable_output_fails_before_work(where, basic, style, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = (tmp_path / "nope" / "o.mp4") if where == "missing_folder" else blocker / "o.mp4"
    code, _, err = _run(["video", basic, style, "-o", out, *FAST], capsys)
    assert code == 1 and err.count("\n") == 1 and "folder" in err
    assert not out.exists()


def test_range_past_the_end_is_a_usage_error(basic, style, tmp_path, capsys):
    code, _, err = _run(
        ["video", basic, style, "-o", tmp_path / "o.mp4", "--start", "9", *FAST], capsys
    )
    assert code == 2 and "past the end" in err


@pytest.mark.parametrize(
    ("backend", "workers", "fragment"),
    [("tensorflow", 2, "needs KERAS_BACKEND=jax"), ("jax", 1, "--workers 2 or more")],
)
def test_batch_chunks_needs_jax_and_several_workers(
    backend, workers, fragment, basic, style, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KERAS_BACKEND", backend)
    out = tmp_path / "out.mp4"
    args = ["video", basic, style, "-o", out, *FAST, "--batch-chunks", "--workers", workers]
    code, _, err = _run(args, capsys)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not out.exists()
