from typing import Literal, get_args, get_origin

import pytest
from pydantic import ValidationError

from nst_video.nst_core.errors import InvalidSettingsError
from nst_video.nst_core.settings import (
    MAX_SIZE,
    StyleSettings,
    VideoSettings,
    make_settings,
    make_video_settings,
    settings_error,
)


def test_stable_hash_equal_for_equal_settings_and_differs_otherwise():
    assert make_settings(size=64).stable_hash() == make_settings(size=64).stable_hash()
    assert make_settings(size=64).stable_hash() != make_settings(size=65).stable_hash()
    assert len(make_settings().stable_hash()) == 64


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"size": 0}, "size"),
        ({"size": -5}, "size"),
        ({"size": MAX_SIZE + 1}, "size"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"style_weight": -1.0}, "style_weight"),
        ({"tv_weight": -1.0}, "tv_weight"),
        ({"content_layers": ("block9_conv9",)}, "unknown layer 'block9_conv9'"),
        ({"style_layers": ("relu1_1",)}, "unknown layer 'relu1_1'"),
        ({"style_layer_weights": (1.0, 2.0)}, "expected 5"),
        ({"style_blend_weights": (-1.0, 2.0)}, "non-negative"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"no_such_flag": 1}, "no_such_flag"),
    ],
)
def test_invalid_settings_give_one_line_error(values, fragment):
    with pytest.raises(InvalidSettingsError) as caught:
        make_settings(**values)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_blend_weights_must_match_style_count_and_are_normalized():
    settings = make_settings(style_blend_weights=(1.0, 3.0))
    assert settings.blend_weights(2) == (0.25, 0.75)
    with pytest.raises(InvalidSettingsError, match="2 values for 3 style"):
        settings.blend_weights(3)
    assert make_settings().blend_weights(4) == (0.25,) * 4


def test_video_default_size_is_the_clis():
    assert make_video_settings().size == 256 and make_settings().size == 512


@pytest.mark.parametrize("model", [StyleSettings, VideoSettings])
def test_every_field_is_described_with_its_choices(model):
    for name, field in model.model_fields.items():
        assert field.description, name
        if get_origin(field.annotation) is Literal:
            assert all(choice in field.description for choice in get_args(field.annotation)), name


def test_errors_name_the_callers_label():
    with pytest.raises(InvalidSettingsError, match=r"^invalid setting size \(--size\): "):
        try:
            StyleSettings(size=0)
        except ValidationError as error:
            raise settings_error(error, {"size": "--size"}) from None
