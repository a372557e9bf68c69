"""tasks.video on real media: tiny clips made once per session with ffmpeg's lavfi sources.

The ffmpeg-only probe path (no ffprobe, as with the imageio-ffmpeg wheel) is forced for every
test; the ffprobe path is compared against it only where an ffprobe binary exists.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.tasks import video
from nst_video.tasks.video import FFmpegError, probing, process
from nst_video.tasks.video import header as headers
from tests.media import FPS, SOLID_RGB, md5, rotated_clip

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "videos"


@pytest.fixture(autouse=True)
def ffmpeg_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Always exercise the path used where only an ffmpeg binary exists."""
    monkeypatch.setattr(headers, "ffprobe_exe", lambda: None)


def _children() -> list[int]:
    """Live or zombie child processes of this test process (Linux /proc)."""
    me, kids = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            kids.append(int(entry.name))
    return kids


def _as_int(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames).astype(np.int16)


# --------------------------------------------------------------------------- fixtures


# --------------------------------------------------------------------------- binaries


def test_ffmpeg_binary_is_recent_enough() -> None:
    assert Path(video.ffmpeg_exe()).is_file()
    assert video.ffmpeg_version(video.ffmpeg_exe()) >= video.MIN_FFMPEG_VERSION


# --------------------------------------------------------------------------- probe


def test_probe_basic_clip(basic: Path) -> None:
    info = video.probe(basic)
    assert (info.width, info.height, info.coded_width, info.coded_height) == (64, 48, 64, 48)
    assert info.frame_count == 12
    assert info.avg_fps == Fraction(30) and isinstance(info.avg_fps, Fraction)
    assert info.r_fps == Fraction(30)
    assert not info.is_vfr
    assert (info.pix_fmt, info.bit_depth, info.color_range) == ("yuv420p", 8, "tv")
    assert info.duration == pytest.approx(0.4)
    assert (info.rotation, info.has_audio, info.audio_codec) == (0, False, None)


def test_probe_reports_audio(with_short_audio: Path) -> None:
    info = video.probe(with_short_audio)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.frame_count == 12


def test_probe_one_frame_clip(one_frame: Path) -> None:
    info = video.probe(one_frame)
    assert info.frame_count == 1
    assert info.avg_fps == Fraction(30)
    assert len(list(video.read_frames(one_frame))) == 1


def test_probe_ten_bit(ten_bit: Path) -> None:
    info = video.probe(ten_bit)
    assert (info.pix_fmt, info.bit_depth, info.color_range) == ("yuv420p10le", 10, "tv")


def test_probe_full_range(full_range: Path) -> None:
    info = video.probe(full_range)
    assert info.color_range == "pc"
    assert info.bit_depth == 8


def test_probe_flags_vfr_and_counts_decoded_frames(vfr: Path, basic: Path) -> None:
    info = video.probe(vfr)
    assert info.is_vfr
    assert info.frame_count == 13
    assert info.r_fps == Fraction(30)
    assert info.avg_fps == Fraction(130, 7)  # 13 frames in 0.7 s, as ffprobe would say
    assert info.duration == pytest.approx(0.7)
    assert not video.probe(basic).is_vfr


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_probe_rotation(media: Path, basic: Path, clockwise: int) -> None:
    info = video.probe(rotated_clip(media, basic, clockwise))
    assert info.rotation == clockwise
    assert (info.coded_width, info.coded_height) == (64, 48)
    swapped = clockwise in (90, 270)
    assert (info.width, info.height) == ((48, 64) if swapped else (64, 48))


def test_probe_odd_size(odd: Path) -> None:
    info = video.probe(odd)
    assert (info.width, info.height, info.frame_count) == (33, 25, 6)


def _invalid_cases(media: Path) -> dict[str, tuple[Path, str]]:
    folder = media / "a_folder"
    folder.mkdir(exist_ok=True)
    empty = media / "empty.mp4"
    empty.write_bytes(b"")
    text = media / "notes.mp4"
    text.write_text("just some text, not a video\n" * 20)
    return {
        "missing": (media / "nope.mp4", "no such file"),
        "folder": (folder, "is a folder"),
        "empty": (empty, "file is empty (0 bytes)"),
        "text": (text, "not a video"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text"])
def test_probe_rejects_bad_paths(media: Path, case: str) -> None:
    path, reason = _invalid_cases(media)[case]
    with pytest.raises(InvalidInputError) as err:
        video.probe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message


def test_probe_rejects_png_renamed_mp4(png_as_mp4: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"still_image\.mp4: not a video \(a single"):
        video.probe(png_as_mp4)


def test_probe_rejects_audio_only(audio_only: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"tone\.m4a: not a video \(no video stream"):
        video.probe(audio_only)


def test_probe_rejects_truncated_mp4(truncated: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"truncated or corrupt \(ffmpeg: moov atom"):
        video.probe(truncated)


def test_probe_rejects_truncated_faststart_mp4(truncated_faststart: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"truncated or corrupt \(ffmpeg: .*partial"):
        video.probe(truncated_faststart)


def test_bundled_sample_clips() -> None:
    bottles = video.probe(ASSETS / "bottles_with_tone.mp4")
    assert (bottles.width, bottles.height, bottles.frame_count) == (256, 144, 90)
    assert bottles.avg_fps == Fraction(179, 6)
    assert bottles.has_audio and bottles.audio_codec == "aac"
    thanks = video.probe(ASSETS / "thanks.mkv")
    assert (thanks.pix_fmt, thanks.color_range, thanks.frame_count) == ("yuvj420p", "pc", 51)
    assert thanks.avg_fps == Fraction(30) and not thanks.is_vfr  # 1 ms time base: 33/34 ms
    for clip in ASSETS.iterdir():
        assert clip.stat().st_size < 300_000


# --------------------------------------------------------------------------- header parsers

FFMPEG6_TEXT = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':
  Duration: 00:00:10.52, start: 0.000000, bitrate: 17000 kb/s
  Stream #0:0[0x1](eng): Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67), 3840x2160, 16800 kb/s, 29.97 fps, 29.97 tbr, 600 tbn (default)
    Metadata:
      handler_name    : Core Media Video
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 192 kb/s (default)
  Stream #0:2[0x3](und): Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 320x240, 90k tbr (attached pic)
At least one output file must be specified
"""  # noqa: E501


def test_parse_ffmpeg6_header_text() -> None:
    header = headers.header_from_ffmpeg_text(FFMPEG6_TEXT)
    assert header.video_codec == "hevc"
    assert (header.coded_width, header.coded_height, header.rotation) == (3840, 2160, 90)
    assert (header.pix_fmt, header.bit_depth, header.color_range) == ("yuv420p10le", 10, "tv")
    assert header.audio_codecs == ("aac",)
    assert header.duration == pytest.approx(10.52)
    assert not header.still_image


def test_parse_legacy_rotate_tag() -> None:
    text = FFMPEG6_TEXT.replace("Side data:", "rotate          : 270").replace(
        "      displaymatrix: rotation of -90.00 degrees\n", ""
    )
    assert headers.header_from_ffmpeg_text(text).rotation == 270


FFPROBE_JSON = {
    "streams": [
        {
            "index": 0,
            "codec_name": "h264",
            "codec_type": "video",
            "width": 1920,
            "height": 1080,
            "coded_width": 1920,
            "coded_height": 1088,
            "pix_fmt": "yuvj420p",
            "color_range": "pc",
            "r_frame_rate": "30000/1001",
            "avg_frame_rate": "30000/1001",
            "bits_per_raw_sample": "8",
            "nb_frames": "300",
            "disposition": {"attached_pic": 0},
            "side_data_list": [{"side_data_type": "Display Matrix", "rotation": 90}],
        },
        {"index": 1, "codec_name": "opus", "codec_type": "audio"},
    ],
    "format": {"format_name": "matroska,webm", "duration": "10.010000"},
}


def test_parse_ffprobe_json() -> None:
    header = headers.header_from_ffprobe_json(FFPROBE_JSON)
    assert (header.video_codec, header.coded_width, header.coded_height) == ("h264", 1920, 1080)
    assert header.rotation == 270  # display matrix +90 is counter-clockwise
    assert (header.color_range, header.bit_depth, header.pix_fmt) == ("pc", 8, "yuvj420p")
    assert header.audio_codecs == ("opus",)


@pytest.mark.skipif(process.ffprobe_exe() is None, reason="no ffprobe binary on PATH")
@pytest.mark.parametrize(
    "name", ["basic", "ten_bit", "full_range", "vfr", "with_short_audio", "rot90", "odd"]
)
def test_ffprobe_path_agrees_with_ffmpeg_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = request.getfixturevalue(name)
    via_ffmpeg = video.probe(path)
    exe = process.ffprobe_exe()
    monkeypatch.setattr(headers, "ffprobe_exe", lambda: exe)
    via_ffprobe = video.probe(path)
    assert via_ffprobe == via_ffmpeg


# --------------------------------------------------------------------------- read_frames


def test_read_frames_shape_and_dtype(basic_frames: list[np.ndarray]) -> None:
    assert len(basic_frames) == 12
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in basic_frames)
    distinct = {f.tobytes() for f in basic_frames}
    assert len(distinct) == 12  # else an off-by-one in a range could go unnoticed


@pytest.mark.parametrize(("start", "count"), [(0, 3), (4, 4), (5, 7), (7, None), (11, 1)])
def test_read_range_is_bit_exact(
    basic: Path, basic_frames: list[np.ndarray], start: int, count: int | None
) -> None:
    part = list(video.read_frames(basic, start=start, count=count))
    expected = basic_frames[start:] if count is None else basic_frames[start : start + count]
    assert len(part) == len(expected)
    for got, want in zip(part, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("clip", ["basic", "vfr", "odd", "rot90", "one_frame", "ten_bit"])
def test_demux_count_without_decoding_matches_the_probe(
    request: pytest.FixtureRequest, clip: str
) -> None:
    path = request.getfixturevalue(clip)
    assert probing.count_packets(path) == video.probe(path).frame_count


def test_read_range_at_end_is_empty(basic: Path) -> None:
    assert list(video.read_frames(basic, start=12)) == []


@pytest.mark.parametrize(("start", "count"), [(-1, None), (13, None), (10, 3), (0, -1)])
def test_read_range_outside_video_is_refused(basic: Path, start: int, count: int | None) -> None:
    with pytest.raises(ValueError, match="basic.mp4"):
        video.read_frames(basic, start=start, count=count)


def test_read_frames_size_caps_longer_side(basic: Path) -> None:
    frames = list(video.read_frames(basic, count=2, size=32))
    assert frames[0].shape == (24, 32, 3)


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_read_frames_applies_rotation(
    media: Path, basic: Path, basic_frames: list[np.ndarray], clockwise: int
) -> None:
    rotated = list(video.read_frames(rotated_clip(media, basic, clockwise), count=3))
    want = [np.rot90(f, k=-clockwise // 90) for f in basic_frames[:3]]
    wrong = [np.rot90(f, k=clockwise // 90) for f in basic_frames[:3]]
    assert rotated[0].shape == want[0].shape
    assert _mean_abs(np.stack(rotated), np.stack(want)) < 1.0  # chroma siting differs a bit
    if clockwise != 180:
        assert _mean_abs(np.stack(rotated), np.stack(wrong)) > 20


def test_read_frames_rotation_with_size(media: Path, basic: Path) -> None:
    frames = list(video.read_frames(rotated_clip(media, basic, 90), count=1, size=32))
    assert frames[0].shape == (32, 24, 3)


@pytest.mark.parametrize("clip", ["ten_bit", "full_range"])
def test_read_frames_converts_colours(request: pytest.FixtureRequest, clip: str) -> None:
    frames = list(video.read_frames(request.getfixturevalue(clip)))
    mean = _as_int(frames).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean, SOLID_RGB, atol=4)


def test_read_frames_odd_size(odd: Path) -> None:
    frames = list(video.read_frames(odd))
    assert len(frames) == 6 and frames[0].shape == (25, 33, 3)


def test_read_frames_vfr_yields_decoded_frames(vfr: Path) -> None:
    frames = list(video.read_frames(vfr))
    assert len(frames) == 13  # the gap is not filled with duplicates


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
def test_early_close_leaves_no_child_process(basic: Path) -> None:
    before = set(_children())  # other fixtures may own long-running children
    frames = video.read_frames(basic)
    assert set(_children()) == before  # nothing starts before the first next()
    next(frames)
    assert len(set(_children()) - before) == 1
    frames.close()
    assert set(_children()) == before  # killed and reaped: not even a zombie


@needs_proc
def test_consumer_error_leaves_no_child_process(basic: Path) -> None:
    before = set(_children())
    with pytest.raises(RuntimeError):
        for i, _ in enumerate(video.read_frames(basic)):
            if i == 2:
                raise RuntimeError("consumer failed")
    assert set(_children()) == before


# --------------------------------------------------------------------------- write_frames


def _solid(rgb: tuple[int, int, int], n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    return [np.full((h, w, 3), rgb, dtype=np.uint8) for _ in range(n)]


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    frames = _solid((200, 40, 90), 5) + _solid((20, 220, 60), 5)
    out = tmp_path / "solid.mp4"
    assert video.write_frames(frames, out, Fraction(30000, 1001)) == 10
    info = video.probe(out)
    assert info.frame_count == 10 and info.avg_fps == Fraction(30000, 1001)
    assert (info.pix_fmt, info.width, info.height) == ("yuv420p", 64, 48)
    back = _as_int(list(video.read_frames(out)))
    np.testing.assert_allclose(back[:5].reshape(-1, 3).mean(0), (200, 40, 90), atol=3)
    np.testing.assert_allclose(back[5:].reshape(-1, 3).mean(0), (20, 220, 60), atol=3)
    assert [p.name for p in tmp_path.iterdir()] == ["solid.mp4"]  # no temporary left


def _gradient(h: int, w: int, n: int) -> list[np.ndarray]:
    """Smooth frames (4:2:0 chroma loss stays small), shifted a little per frame."""
    y, x = np.mgrid[0:h, 0:w]
    return [
        np.stack([x * 6 + i, y * 8 + 20, 200 - x * 3 - i], axis=-1).astype(np.uint8)
        for i in range(n)
    ]


def test_write_pads_odd_sizes_by_repeating_edges(tmp_path: Path) -> None:
    frames = _gradient(25, 33, 4)
    out = tmp_path / "odd.mp4"
    assert video.write_frames(frames, out, Fraction(FPS), crf=0) == 4
    back = list(video.read_frames(out))
    assert len(back) == 4 and back[0].shape == (26, 34, 3)
    assert _mean_abs(back[0][:25, :33], frames[0]) < 2
    assert _mean_abs(back[0][:25, 33], frames[0][:, 32]) < 3  # last column repeated
    assert _mean_abs(back[0][25, :33], frames[0][24]) < 3  # last row repeated


def test_write_vfr_frames_at_avg_fps_keeps_duration(tmp_path: Path, vfr: Path) -> None:
    info = video.probe(vfr)
    out = tmp_path / "cfr.mp4"
    video.write_frames(video.read_frames(vfr, info=info), out, info.avg_fps)
    written = video.probe(out)
    assert written.frame_count == 13 and not written.is_vfr
    assert written.duration == pytest.approx(info.duration)
    assert written.duration == pytest.approx(0.7, abs=1 / 30)  # the source container's


def test_write_missing_folder_fails_before_consuming(tmp_path: Path) -> None:
    consumed = []

    def frames():
        consumed.append(1)
        yield from _solid((0, 0, 0), 2)

    with pytest.raises(InvalidInputError, match=r"destination folder \S+/missing does not exist"):
        video.write_frames(frames(), tmp_path / "missing" / "out.mp4", Fraction(30))
    assert consumed == []


def test_write_under_a_file_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("x")
    with pytest.raises(InvalidInputError, match=r"folder \S+/some_file is not a folder"):
        video.write_frames(_solid((0, 0, 0), 2), blocker / "out.mp4", Fraction(30))


def test_write_bad_frame_leaves_nothing_behind(tmp_path: Path) -> None:
    frames = _solid((0, 0, 0), 3) + _solid((0, 0, 0), 1, h=32)
    with pytest.raises(InvalidInputError, match=r"frame 3 is 64x32, frame 0 was 64x48"):
        video.write_frames(frames, tmp_path / "out.mp4", Fraction(30))
    assert list(tmp_path.iterdir()) == []


@needs_proc
def test_write_ffmpeg_failure_is_reported_and_cleaned(tmp_path: Path) -> None:
    before = set(_children())
    with pytest.raises(FFmpegError, match=r"out\.mp4: ffmpeg failed \(exit \d+\): ") as err:
        video.write_frames(
            _solid((0, 0, 0), 3), tmp_path / "out.mp4", Fraction(30), preset="no-such-preset"
        )
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
    assert set(_children()) == before


@pytest.mark.parametrize(
    "frames", [[], [np.zeros((8, 8, 3), np.float32)], [np.zeros((8, 8), np.uint8)]]
)
def test_write_rejects_no_or_wrong_frames(tmp_path: Path, frames: list[np.ndarray]) -> None:
    with pytest.raises(InvalidInputError, match="out.mp4"):
        video.write_frames(frames, tmp_path / "out.mp4", Fraction(30))


# --------------------------------------------------------------------------- concat, audio


def test_concat_three_segments_is_lossless(tmp_path: Path, basic_frames: list[np.ndarray]) -> None:
    bounds = [(0, 4), (4, 7), (7, 12)]
    segments = []
    for i, (a, b) in enumerate(bounds):
        segments.append(tmp_path / f"seg{i}.mp4")
        video.write_frames(basic_frames[a:b], segments[-1], Fraction(FPS))
    decoded = [f for s in segments for f in video.read_frames(s)]
    out = video.concat(segments, tmp_path / "joined.mp4")
    info = video.probe(out)
    assert info.frame_count == 12 and info.avg_fps == Fraction(FPS)
    for got, want in zip(video.read_frames(out), decoded, strict=True):
        np.testing.assert_array_equal(got, want)


def test_concat_refuses_mismatched_segments(tmp_path: Path, basic: Path, odd: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot be concatenated"):
        video.concat([basic, odd], tmp_path / "joined.mp4")
    assert list(tmp_path.iterdir()) == []


def test_mux_audio_copies_audio_bit_exact(
    tmp_path: Path, basic_frames: list[np.ndarray], with_short_audio: Path
) -> None:
    stylized = tmp_path / "stylized.mp4"
    video.write_frames(basic_frames, stylized, Fraction(FPS))
    out = video.mux_audio(stylized, with_short_audio, tmp_path / "final.mp4")
    assert md5(out, "0:a") == md5(with_short_audio, "0:a")
    assert md5(out, "0:v") == md5(stylized, "0:v")
    info = video.probe(out)
    assert info.has_audio and info.frame_count == 12


def test_mux_audio_without_source_audio_copies_video(tmp_path: Path, basic: Path) -> None:
    out = video.mux_audio(basic, basic, tmp_path / "final.mkv")
    info = video.probe(out)
    assert not info.has_audio and info.frame_count == 12
    assert md5(out, "0:v") == md5(basic, "0:v")


# --------------------------------------------------------------------------- scene cuts


def test_scene_cut_found_at_known_index(two_scenes: Path) -> None:
    assert video.detect_scene_cuts(two_scenes) == [12]
    assert video.detect_scene_cuts(two_scenes, size=32) == [12]


def test_no_scene_cut_in_continuous_motion(basic: Path) -> None:
    assert video.detect_scene_cuts(basic) == []
    assert len(video.scene_scores(basic)) == 12
