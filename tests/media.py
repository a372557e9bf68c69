"""Tiny real media made once per test session with ffmpeg's lavfi sources.

A pytest plugin (see tests/conftest.py): its fixtures serve every test module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from nst_video.tasks import video

FPS = 30
SOLID_RGB = (30, 120, 220)  # away from 0/255 so a wrong range or depth shows


def ffmpeg(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def lavfi(out: Path, source: str, *encode: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", source, *encode, str(out))
    return out


def md5(path: Path, streams: str) -> str:
    """md5 of the stream-copied packets: equal means the packets are bit-identical."""
    out = ffmpeg("-i", str(path), "-map", streams, "-c", "copy", "-f", "md5", "-").stdout
    return out.strip()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def testsrc(size: str = "64x48", frames: int = 12) -> str:
    """testsrc: every frame differs (moving gradient, frame counter), so off-by-one shows."""
    return f"testsrc=s={size}:r={FPS}:d={frames / FPS}"


@pytest.fixture(scope="session")
def basic(media: Path) -> Path:
    """12 frames, 64x48, keyframe every 5 frames with B-frames: ranges cross GOPs."""
    return lavfi(
        media / "basic.mp4",
        testsrc(),
        "-c:v",
        "libx264",
        "-g",
        "5",
        "-bf",
        "2",
        "-crf",
        "10",
        "-pix_fmt",
        "yuv420p",
    )


@pytest.fixture(scope="session")
def basic_frames(basic: Path) -> list[np.ndarray]:
    return list(video.read_frames(basic))


@pytest.fixture(scope="session")
def solid_color() -> str:
    r, g, b = SOLID_RGB
    return f"color=c=0x{r:02X}{g:02X}{b:02X}:s=64x48:r={FPS}:d={3 / FPS}"


@pytest.fixture(scope="session")
def ten_bit(media: Path, solid_color: str) -> Path:
    return lavfi(media / "ten_bit.mp4", solid_color, "-vf", "format=yuv420p10le", "-c:v", "libx264")


@pytest.fixture(scope="session")
def full_range(media: Path, solid_color: str) -> Path:
    return lavfi(
        media / "full_range.mp4",
        solid_color,
        "-vf",
        "scale=out_range=full,format=yuvj420p",
        "-c:v",
        "libx264",
    )


@pytest.fixture(scope="session")
def odd(media: Path) -> Path:
    """33x25: only possible in 4:4:4 (4:2:0 needs even sizes)."""
    return lavfi(
        media / "odd.mp4",
        testsrc("34x26", 6),
        "-vf",
        "format=yuv444p,crop=33:25:0:0",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
    )


@pytest.fixture(scope="session")
def vfr(media: Path) -> Path:
    """21 frames at 30 fps with frames 5..12 dropped: a 0.3 s gap, 13 frames left."""
    return lavfi(
        media / "vfr.mp4",
        testsrc(frames=21),
        "-vf",
        "select=not(between(n\\,5\\,12))",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
    )


@pytest.fixture(scope="session")
def one_frame(media: Path) -> Path:
    return lavfi(media / "one.mp4", testsrc(frames=1), "-c:v", "libx264")


@pytest.fixture(scope="session")
def audio_only(media: Path) -> Path:
    return lavfi(media / "tone.m4a", "sine=f=440:d=0.5", "-c:a", "aac")


def with_tone(out: Path, seconds: float) -> Path:
    """The 0.4 s testsrc clip with a 440 Hz AAC tone of `seconds`."""
    tone = f"sine=f=440:d={seconds}"
    ffmpeg("-f", "lavfi", "-i", testsrc(), "-f", "lavfi", "-i", tone,
           "-c:v", "libx264", "-c:a", "aac", str(out))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def with_short_audio(media: Path) -> Path:
    """Video 0.4 s with a 0.25 s AAC tone: all of the audio fits in the video."""
    return with_tone(media / "short_audio.mp4", 0.25)


@pytest.fixture(scope="session")
def with_long_audio(media: Path) -> Path:
    """Video 0.4 s with a 2 s tone: the audio outlasts the video and must be kept whole."""
    return with_tone(media / "long_audio.mp4", 2)


@pytest.fixture(scope="session")
def non_square(media: Path) -> Path:
    """6 frames of 160x120 stored at SAR 4:3 (displayed as 213x120, 16:9), with a 0.5 s tone
    that outlasts the 0.2 s video."""
    out = media / "non_square.mp4"
    ffmpeg("-f", "lavfi", "-i", testsrc("160x120", 6), "-f", "lavfi", "-i", "sine=f=440:d=0.5",
           "-vf", "setsar=4/3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
           str(out))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def two_scenes(media: Path) -> Path:
    """12 frames of testsrc then 12 of colour bars: a cut at frame 12."""
    out = media / "two_scenes.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        testsrc(),
        "-f",
        "lavfi",
        "-i",
        f"smptebars=s=64x48:r={FPS}:d={12 / FPS}",
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1[v]",
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        str(out),
    )
    return out


@pytest.fixture(scope="session")
def png_as_mp4(media: Path) -> Path:
    lavfi(media / "still.png", testsrc(frames=1), "-frames:v", "1")
    target = media / "still_image.mp4"
    target.write_bytes((media / "still.png").read_bytes())
    return target


@pytest.fixture(scope="session")
def truncated(media: Path, basic: Path) -> Path:
    """First half of a real mp4 (index at the end, so the index is lost)."""
    data = basic.read_bytes()
    out = media / "truncated.mp4"
    out.write_bytes(data[: len(data) // 2])
    return out


@pytest.fixture(scope="session")
def truncated_faststart(media: Path) -> Path:
    """First half of an mp4 with its index in front: the index promises missing data."""
    whole = lavfi(
        media / "faststart.mp4", testsrc(frames=30), "-c:v", "libx264", "-movflags", "+faststart"
    )
    data = whole.read_bytes()
    out = media / "truncated_faststart.mp4"
    out.write_bytes(data[: len(data) // 2])
    return out


@pytest.fixture(scope="session")
def rot90(media: Path, basic: Path) -> Path:
    return rotated_clip(media, basic, 90)


def rotated_clip(media: Path, basic: Path, clockwise: int) -> Path:
    """Stream copy of `basic` with a display matrix (-display_rotation is counter-clockwise)."""
    out = media / f"rot{clockwise}.mp4"
    if not out.exists():
        ffmpeg("-display_rotation", str(-clockwise), "-i", str(basic), "-c", "copy", str(out))
    return out
