"""Training data of a fast-mode network: frames of the videos to stylize, plus any images.

Each video gives up to `frames_per_video` frames spread evenly over it, each with the frame
that follows it (for the frame term of nst_core.fast_train); a folder adds its images as
stills (a still is its own "previous" frame, so the frame term is 0 there). Everything is
scaled so its longest side is `size` (never upscaled, except a side shorter than the crop),
and one decode per video keeps only the frames it needs.

Batches are random square crops, the same window in a frame and its successor. The crops of
step n depend only on (seed, n): a resumed training draws exactly the batches it would
have drawn, with no generator state to save.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.images import load_image, resize
from nst_video.nst_core.size import Size
from nst_video.tasks.video import probe, read_frames

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Sample:
    """A training frame (H, W, 3 float32 in [0, 1]) and the frame before it in its video."""

    frame: np.ndarray
    previous: np.ndarray


@dataclass
class TrainingData:
    """The samples and where they came from (recorded on the model card)."""

    samples: list[Sample] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)

    def describe(self) -> dict:
        return {"samples": len(self.samples), "sources": self.sources}


def spread(total: int, count: int) -> list[int]:
    """Up to `count` indices spread evenly over range(total), first and last included."""
    if total <= count:
        return list(range(total))
    if count == 1:
        return [total // 2]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def _as_float(frame: np.ndarray) -> np.ndarray:
    return frame.astype("float32") / 255.0


def _at_least(image: np.ndarray, side: int) -> np.ndarray:
    """`image` upscaled so that its shorter side is at least `side` (crops must fit)."""
    size = Size.of(image)
    if size.shortest >= side:
        return image
    return resize(image, size.scale_to(-(-size.longest * side // size.shortest)))


def video_samples(path: str | os.PathLike, frames_per_video: int, size: int) -> list[Sample]:
    """Frames spread evenly over a video, each paired with the next frame (a one-frame video
    gives one sample, paired with itself)."""
    info = probe(path)
    total = info.frame_count
    picks = spread(max(total - 1, 1), frames_per_video)  # the last frame has no successor
    wanted = set(picks) | {p + 1 for p in picks if p + 1 < total}
    kept = {}
    for index, frame in enumerate(read_frames(path, count=max(wanted) + 1, size=size, info=info)):
        if index in wanted:
            kept[index] = _as_float(frame)
    return [Sample(kept.get(p + 1, kept[p]), kept[p]) for p in picks]


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    path = Path(folder)
    if not path.is_dir():
        raise InvalidInputError(f"{path}: images folder not found")
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_sample(path: Path, size: int) -> Sample:
    image = load_image(path)
    still = resize(image, Size.of(image).fit(size))
    return Sample(still, still)


def check_any_data(videos: Sequence[object], images_dir: str | os.PathLike | None) -> None:
    """Fail on one line when there is nothing to train on: no video and no image."""
    if videos or (images_dir is not None and folder_images(images_dir)):
        return
    where = f"{images_dir} holds no images" if images_dir else "no images folder"
    raise InvalidInputError(f"no training frames: no videos given and {where}")


def load_training_data(
    videos: Sequence[str | os.PathLike],
    images_dir: str | os.PathLike | None,
    *,
    size: int,
    frames_per_video: int,
    crop: int,
) -> TrainingData:
    """The samples of every video and image, at least `crop` px on their shorter side."""
    check_any_data(videos, images_dir)
    data = TrainingData()
    for video in videos:
        samples = video_samples(video, frames_per_video, size)
        data.samples += samples
        data.sources.append({"video": Path(video).name, "frames": len(samples)})
    if images_dir is not None:
        images = folder_images(images_dir)
        data.samples += [image_sample(path, size) for path in images]
        data.sources.append({"images": Path(images_dir).name, "files": len(images)})
    data.samples = [
        Sample(_at_least(s.frame, crop), _at_least(s.previous, crop)) for s in data.samples
    ]
    return data


class CropSampler:
    """Batches of random `crop` x `crop` windows of the samples, a function of (seed, step)."""

    def __init__(self, data: TrainingData, crop: int, batch_size: int, seed: int) -> None:
        self.samples = data.samples
        self.crop = crop
        self.batch_size = batch_size
        self.seed = seed

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames, previous frames) of step `step`: two (B, crop, crop, 3) float32 arrays."""
        rng = np.random.default_rng([self.seed, step])
        picks = rng.integers(len(self.samples), size=self.batch_size)
        pairs = [self._crop(self.samples[i], rng) for i in picks]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def _crop(self, sample: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        height, width = sample.frame.shape[:2]
        top = int(rng.integers(height - self.crop + 1))
        left = int(rng.integers(width - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return sample.frame[window], sample.previous[window]
