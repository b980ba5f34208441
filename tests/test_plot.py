"""Grouped bar charts: valid PNG and SVG, written atomically, bad suffixes refused."""

import matplotlib.image
import pytest

from factories import record, results_file, train
from pybench.errors import UserError
from pybench.report.plot import plot

FILES = [results_file([
    record("pytorch", "vgg16", train(0.0259, 0.0554, 0.0245)),
    record("flux", "vgg16", train(0.0479, 0.6293), noisy=("total",)),
    record("flux", "resnet18", error="boom"),
    record("pytorch", "resnet18", train(0.0066, 0.0213, 0.0051)),
    record("pytorch", "resnet50", train(1.2, 2.5, 1.1), device="cpu"),
])]


def test_png_is_valid_and_readable(tmp_path):
    out = tmp_path / "bars.png"
    plot(FILES, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 500  # two device subplots stacked
    assert [p.name for p in tmp_path.iterdir()] == ["bars.png"]  # no temp file left behind


def test_svg_names_the_devices(tmp_path):
    out = tmp_path / "bars.svg"
    plot(FILES, out, stat="min")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "NVIDIA H200" in text and "AMD EPYC" in text


@pytest.mark.parametrize("name, message", [("bars.pdf", "use a .png or .svg"),
                                           ("missing/bars.png", "does not exist")])
def test_bad_targets_are_user_errors(tmp_path, name, message):
    with pytest.raises(UserError, match=message):
        plot(FILES, tmp_path / name)


def test_nothing_to_plot(tmp_path):
    with pytest.raises(UserError, match="nothing to plot"):
        plot([results_file([record("flux", "vgg16", error="boom")])], tmp_path / "x.png")
