"""Training data from real tiny clips (ffmpeg) and image folders: sampling, pairs, crops."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from nst_video.nst_core.errors import InvalidInputError
from nst_video.tasks.train_data import (
    CropSampler,
    load_training_data,
    spread,
    video_samples,
)


def test_spread_is_even_and_keeps_both_ends():
    assert spread(11, 3) == [0, 5, 10]
    assert spread(4, 10) == [0, 1, 2, 3]
    assert spread(9, 1) == [4]


def test_video_samples_pair_each_frame_with_the_one_before(basic, basic_frames):
    samples = video_samples(basic, frames_per_video=3, size=64)
    assert len(samples) == 3
    # 12 frames: picks spread over 0..10, each followed by its successor.
    for sample, pick in zip(samples, [0, 5, 10], strict=True):
        np.testing.assert_array_equal(sample.previous, basic_frames[pick] / np.float32(255))
        np.testing.assert_array_equal(sample.frame, basic_frames[pick + 1] / np.float32(255))
        assert sample.frame.dtype == np.float32


def test_frames_are_scaled_to_the_longest_side(basic):
    (sample,) = video_samples(basic, frames_per_video=1, size=32)
    assert sample.frame.shape == (24, 32, 3)


def test_a_one_frame_video_is_one_still_sample(one_frame):
    (sample,) = video_samples(one_frame, frames_per_video=8, size=64)
    np.testing.assert_array_equal(sample.frame, sample.previous)


def test_images_of_a_folder_are_stills_and_other_files_ignored(assets, tmp_path):
    shutil.copy(assets / "content" / "bottles.jpg", tmp_path / "a.jpg")
    shutil.copy(assets / "styles" / "the_scream.jpg", tmp_path / "b.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_training_data([], tmp_path, size=48, frames_per_video=4, crop=16)
    assert len(data.samples) == 2
    assert all(max(s.frame.shape[:2]) == 48 for s in data.samples)
    assert data.describe()["sources"] == [{"images": tmp_path.name, "files": 2}]


def test_frames_smaller_than_the_crop_are_upscaled_to_fit_it(basic):
    data = load_training_data([basic], None, size=32, frames_per_video=2, crop=30)
    assert all(min(s.frame.shape[:2]) >= 30 for s in data.samples)


@pytest.mark.parametrize("folder", [False, True])
def test_zero_frames_is_a_one_line_error(folder, tmp_path):
    images = tmp_path if folder else None
    with pytest.raises(InvalidInputError, match="no training frames") as error:
        load_training_data([], images, size=48, frames_per_video=4, crop=32)
    assert "\n" not in str(error.value)
    assert (str(tmp_path) in str(error.value)) == folder


def test_crops_are_a_function_of_seed_and_step(basic):
    data = load_training_data([basic], None, size=64, frames_per_video=6, crop=16)
    sampler = CropSampler(data, crop=16, batch_size=3, seed=7)
    frames, previous = sampler.batch(5)
    assert frames.shape == previous.shape == (3, 16, 16, 3)
    again = CropSampler(data, crop=16, batch_size=3, seed=7).batch(5)
    np.testing.assert_array_equal(frames, again[0])
    np.testing.assert_array_equal(previous, again[1])
    assert not np.array_equal(frames, sampler.batch(6)[0])
    assert not np.array_equal(frames, CropSampler(data, 16, 3, seed=8).batch(5)[0])


def test_a_crop_takes_the_same_window_of_both_frames(assets, tmp_path):
    shutil.copy(assets / "content" / "bottles.jpg", tmp_path / "a.jpg")
    data = load_training_data([], tmp_path, size=64, frames_per_video=1, crop=16)
    frames, previous = CropSampler(data, 16, 4, seed=0).batch(0)
    np.testing.assert_array_equal(frames, previous)  # a still: its own previous frame
