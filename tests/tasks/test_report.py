"""The contact sheet on real clips: frames picked through the clip, one decode per file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from nst_video.tasks import video
from nst_video.tasks.report import contact_sheet
from tests.media import FPS


def test_contact_sheet_puts_the_same_frames_above_each_other(basic: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.mp4"
    video.write_frames(video.read_frames(basic), again, Fraction(FPS), crf=0)
    out = contact_sheet(str(basic), str(again), str(tmp_path / "sheet.png"), height=48)
    with Image.open(out) as image:
        sheet = np.asarray(image.convert("RGB")).astype(np.int16)
    assert sheet.shape == (96, 4 * 64, 3)
    top = [sheet[:48, i * 64 : (i + 1) * 64] for i in range(4)]
    bottom = [sheet[48:, i * 64 : (i + 1) * 64] for i in range(4)]
    for i, frame in enumerate(top):  # each stylized frame sits under its own source frame
        distances = [np.abs(frame - below).mean() for below in bottom]
        assert int(np.argmin(distances)) == i, distances


def test_contact_sheet_of_a_one_frame_clip(one_frame: Path, tmp_path: Path) -> None:
    out = contact_sheet(str(one_frame), str(one_frame), str(tmp_path / "sheet.png"), height=48)
    with Image.open(out) as image:
        assert image.size == (4 * 64, 96)
