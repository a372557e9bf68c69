"""Non-square pixels (a sample aspect ratio) on real media: probed, decoded to square pixels
at the display size, written back at the source's display aspect."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from nst_video.nst_core.size import Size
from nst_video.tasks import video
from nst_video.tasks.video import header as headers
from tests.media import ffmpeg

WIDE = 16 / 9  # 160x120 at SAR 4:3


def test_probe_reports_the_display_size_in_square_pixels(non_square: Path) -> None:
    info = video.probe(non_square)
    assert (info.coded_width, info.coded_height) == (160, 120)
    assert info.sample_aspect == Fraction(4, 3)
    assert info.size == Size(213, 120)


def test_frames_decode_to_square_pixels_at_the_display_aspect(non_square: Path) -> None:
    assert next(video.read_frames(non_square)).shape == (120, 213, 3)
    assert next(video.read_frames(non_square, size=64)).shape == (36, 64, 3)


def test_written_frames_display_at_the_source_aspect(non_square: Path, tmp_path: Path) -> None:
    out = tmp_path / "square.mp4"
    video.write_frames(video.read_frames(non_square, size=64), out, Fraction(30))
    info = video.probe(out)
    assert info.width / info.height == WIDE
    assert info.sample_aspect == 1 and info.frame_count == 6


def test_the_container_aspect_overrides_the_codec_one(non_square: Path, tmp_path: Path) -> None:
    out = tmp_path / "two_to_one.mp4"
    ffmpeg("-i", str(non_square), "-c", "copy", "-aspect", "2:1", str(out))
    info = video.probe(out)  # the stream still says 4:3; the container says 3:2, as decoded
    assert info.sample_aspect == Fraction(3, 2) and info.size == Size(240, 120)


def test_the_aspect_applies_to_stored_pixels_before_rotation(
    non_square: Path, tmp_path: Path
) -> None:
    out = tmp_path / "portrait.mp4"
    ffmpeg("-display_rotation", "-90", "-i", str(non_square), "-c", "copy", str(out))
    assert video.probe(out).size == Size(120, 213)
    assert next(video.read_frames(out, size=64)).shape == (64, 36, 3)


def test_ffprobe_sample_aspect_ratio() -> None:
    stream = {"codec_type": "video", "width": 160, "height": 120}
    for sar, size in (("4:3", Size(213, 120)), ("0:1", Size(160, 120)), (None, Size(160, 120))):
        fields = {"sample_aspect_ratio": sar} if sar else {}
        header = headers.header_from_ffprobe_json({"streams": [stream | fields]})
        assert header.size == size
