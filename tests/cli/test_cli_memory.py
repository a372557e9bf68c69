"""`nst image` under a tight memory budget: stylized smaller, written at the requested size."""

from __future__ import annotations

import json

from PIL import Image

from nst_video.nst_cli.main import main
from nst_video.nst_core.memory import ENV_LIMIT, estimate_bytes
from nst_video.nst_core.size import Size


def test_image_over_budget_is_reduced_with_a_warning(assets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.png"
    # bottles.jpg at --size 64 is 64x36; the budget holds a 32x18 step only.
    monkeypatch.setenv(ENV_LIMIT, f"{(estimate_bytes(Size(32, 18)) + 1000) / 1e9:.9f}")
    args = [
        "image",
        str(assets / "content" / "bottles.jpg"),
        str(assets / "styles" / "starry_night.jpg"),
        "-o", str(out), "--size", "64", "--iterations", "3", "--json",
        "--precision", "float32",  # the budget is a float32 estimate
    ]  # fmt: skip
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["memory"]["strategy"] == "reduce"
    assert report["memory"]["requested"] == [64, 36] and report["memory"]["processing"] == [32, 18]
    assert "WARNING: memory guard" in captured.err and "64x36" in captured.err
    with Image.open(out) as image:
        assert image.size == (64, 36)
