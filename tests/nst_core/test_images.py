import os

import numpy as np
import pytest
from PIL import Image

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.images import load_image, resize, save_image
from nst_video.nst_core.size import Size


def test_grayscale_png_becomes_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((5, 7), 128, "uint8"), "L").save(path)
    image = load_image(path)
    assert image.shape == (5, 7, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, 128 / 255, atol=1e-6)


def test_16_bit_png_keeps_its_full_range(tmp_path):
    path = tmp_path / "deep.png"
    ramp = np.linspace(0, 65535, 16, dtype="uint16").reshape(4, 4)
    Image.fromarray(ramp).save(path)
    image = load_image(path)
    assert image.shape == (4, 4, 3)
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(image[..., 0].ravel(), ramp.ravel() / 65535, atol=1e-6)


def test_rgba_png_is_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    rgba = np.zeros((3, 3, 4), "uint8")
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; the rest is transparent
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path)
    np.testing.assert_allclose(image[0, 0], (1, 0, 0))
    np.testing.assert_allclose(image[2, 2], (1, 1, 1))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("not an image at all"), "not a readable image"),
        (lambda p: p.mkdir(), "no such file"),
    ],
)
def test_bad_image_files_name_the_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "input.jpg"
    make(path)
    with pytest.raises(InvalidInputError) as caught:
        load_image(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_truncated_jpeg_is_refused(tmp_path, assets):
    path = tmp_path / "cut.jpg"
    path.write_bytes((assets / "content" / "bottles.jpg").read_bytes()[:2000])
    with pytest.raises(InvalidInputError, match="cut.jpg"):
        load_image(path)


def test_save_is_atomic_and_round_trips(tmp_path):
    image = np.random.default_rng(0).uniform(size=(6, 5, 3)).astype("float32")
    out = save_image(image, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == [out]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user writes
    np.testing.assert_allclose(load_image(out), np.rint(image * 255) / 255, atol=1e-6)


def test_save_refuses_missing_folder_and_unknown_extension(tmp_path):
    image = np.zeros((2, 2, 3), "float32")
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_image(image, tmp_path / "missing" / "out.png")
    with pytest.raises(InvalidInputError, match="unknown image extension"):
        save_image(image, tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_resize_gives_the_asked_size():
    out = resize(np.ones((10, 20, 3), "float32"), Size(10, 5))
    assert out.shape == (5, 10, 3) and np.allclose(out, 1.0)
