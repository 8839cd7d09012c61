"""``sama report`` writes one self-contained HTML page with its sections, plots and sample
previews; it renders in a real headless Chromium (screenshot checked pixel by pixel)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from pipelines.cli_tools import report_main
from pipelines.report import svg
from pipelines.report.page import build_report
from pipelines.report.previews import encode_png, latent_preview, read_frame

CHROMIUM = "/usr/bin/chromium"
SECTIONS = [
    "counts",
    "validation",
    "distributions",
    "errors",
    "curation",
    "dedup",
    "samples",
    "provenance",
]
PLOTS = [
    "Clip duration",
    "Shots per video",
    "Aspect buckets",
    "Frame counts (clips + video pairs)",
    "Caption length",
    "Instruction length",
    "Judge score: instruction following",
    "Judge score: visual quality",
    "Judge score: content preservation",
    "Judge score: motion consistency",
    "Errors by kind",
]


class Page(HTMLParser):
    """Collects what the tests look at: section ids, plots and their bars, images, figures."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.plots: dict[str, int] = {}  # title -> bars
        self.images: list[str] = []
        self.image_notes: list[str] = []
        self.figures: list[str] = []
        self.missing = 0
        self.external: list[str] = []
        self.cells: list[str] = []
        self._plot: str | None = None
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "svg":
            self._plot = a["data-title"]
            self.plots[self._plot] = 0
        elif tag == "rect" and a.get("class") == "bar" and float(a["height"]) > 0:
            self.plots[self._plot] += 1
        elif tag == "img":
            self.images.append(a["src"])
            self.image_notes.append(a.get("title", ""))
        elif tag == "figure":
            self.figures.append(a["data-kind"])
        elif tag == "div" and a.get("class") == "missing":
            self.missing += 1
        elif tag in ("script", "link", "iframe") or (tag == "img" and "http" in a.get("src", "")):
            self.external.append(tag)
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)

    def handle_endtag(self, tag):
        if tag == "svg":
            self._plot = None
        if tag == "td":
            self._in_td = False


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def png_size(data_uri: str) -> tuple[int, int]:
    blob = base64.b64decode(data_uri.split(",", 1)[1])
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")


def test_report_has_every_section_plot_and_sample(dataset, tmp_path, capsys):
    root, _ = dataset
    out = tmp_path / "r" / "report.html"
    assert report_main([str(root), "-o", str(out), "--samples", "10"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # one file
    page = parse(out.read_text())
    assert page.sections == SECTIONS
    assert list(page.plots) == PLOTS
    assert page.plots["Shots per video"] == 3  # v0: 3 shots, v1: 2, v2/v3: 1
    assert page.plots["Errors by kind"] == 2  # failures: the judge's `filtered` row is curation
    assert page.plots["Judge score: instruction following"] == 3
    assert page.plots["Judge score: motion consistency"] == 1  # images have no MC score
    assert page.external == []
    assert page.figures == ["clips"] * 7 + ["pairs"] * 3  # every row of this tiny dataset
    # clips: stored preview + source frame + latents; pairs: preview, source, target anchor,
    # 2 latents; v3's video is gone
    assert len(page.images) + page.missing == 7 * 3 + 3 * 5
    assert page.missing == 1
    previews = [src for src in page.images if src.startswith("data:image/jpeg;base64,")]
    assert len(previews) == 10  # every v2 row's stored preview
    sizes = [png_size(src) for src in page.images if src not in previews]
    assert (96, 64) in sizes  # anchor frames read from the source videos
    assert (192, 128) in sizes  # 12x8 latents upscaled 16x
    # worst errors: the most frequent stage/kind comes first
    first = page.cells.index("probe")
    assert page.cells[first : first + 4] == ["probe", "not_a_video", "2", "v4"]


def test_report_on_a_broken_dataset_says_so(dataset):
    root, _ = dataset
    path = root / "clips" / "part-00001.parquet"
    path.write_bytes(path.read_bytes()[:1000])
    html = build_report(str(root), samples=4)
    assert "INVALID" in html and "Unreadable shards" in html and "part-00001.parquet" in html
    page = parse(html)
    assert page.sections == SECTIONS and page.figures.count("clips") == 2


def test_latent_preview_and_png():
    lat = np.zeros((16, 2, 4, 6), np.float32)
    lat[0, 0, :, :3] = 1.0  # left half red
    img = latent_preview(lat)
    assert img.shape == (128, 192, 3) and img.dtype == np.uint8
    assert img[0, 0, 0] == 255 and img[0, -1, 0] == 0
    from PIL import Image

    back = np.asarray(Image.open(io.BytesIO(encode_png(img))).convert("RGB"))
    np.testing.assert_array_equal(back, img)


def test_read_frame_seeks_to_the_frame(dataset, tmp_path):
    video = tmp_path / "media" / "v0.mp4"
    first, later = read_frame(str(video), 0, 24.0), read_frame(str(video), 20, 24.0)
    red = np.array([230, 30, 30])

    def square_left(img):  # first column where the red square is
        cols = np.where(np.abs(img[32].astype(int) - red).sum(-1) < 90)[0]
        return cols.min()

    assert abs(square_left(first) - 2) <= 2 and abs(square_left(later) - 42) <= 3
    with pytest.raises(ValueError):
        read_frame(str(video), 500, 24.0)


def test_empty_plot():
    assert "no data" in svg.histogram([], "x")
    assert svg.histogram([float("nan")], "x").count("no data") == 1


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian chromium: apt-get install -y chromium"
)
def test_report_renders_in_headless_chromium(dataset, tmp_path):
    from PIL import Image

    root, _ = dataset
    out = tmp_path / "report.html"
    assert report_main([str(root), "-o", str(out), "--samples", "6"]) == 0
    shot = tmp_path / "report.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,3400",
        out.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    if os.environ.get("SAMA_REPORT_SCREENSHOT"):  # keep it for a person to look at
        shutil.copy(shot, os.environ["SAMA_REPORT_SCREENSHOT"])
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (3400, 1280, 3)
    assert img.std() > 20  # not blank
    bar = np.abs(img - np.array([0x3B, 0x6E, 0xA8])).sum(-1) < 12  # plot bars
    red = np.abs(img - np.array([230, 30, 30])).sum(-1) < 60  # the square in the anchor frames
    rows_with_bars = np.where(bar.any(axis=1))[0]
    rows_with_red = np.where(red.sum(axis=1) > 10)[0]
    assert bar.sum() > 20_000 and red.sum() > 2_000
    assert rows_with_bars.min() < rows_with_red.min()  # plots above the sample grid
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 200  # latent previews are colourful


def test_vae_decoded_previews(dataset, tmp_path):
    """``--vae``: latent previews decoded by the real WanVAE loading path, from a tiny
    random-weight AutoencoderKLWan written with ``save_pretrained`` like the Wan repo."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    root, _ = dataset
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        latents_mean=[0.0] * 16,
        latents_std=[1.0] * 16,
    )
    vae.save_pretrained(tmp_path / "wan" / "vae", safe_serialization=True)
    out = tmp_path / "report.html"
    argv = [
        str(root),
        "-o",
        str(out),
        "--samples",
        "2",
        "--vae",
        str(tmp_path / "wan"),
        "--device",
        "cpu",
        "--no-validate",
    ]
    assert report_main(argv) == 0
    page = parse(out.read_text())
    decoded = [i for i, n in enumerate(page.image_notes) if n == "VAE decode, frame 0"]
    assert len(decoded) == 1 + 2  # the clip's latents, the pair's source and target latents
    assert {png_size(page.images[i]) for i in decoded} == {(192, 128)}  # 96x64 pixels, 2x
    assert "latent ch 0-2, frame 0" not in page.image_notes
    assert page.sections == SECTIONS and "skipped" in out.read_text()


def test_vae_without_a_model_is_explained(dataset, tmp_path, capsys):
    pytest.importorskip("diffusers")
    root, _ = dataset
    argv = [
        str(root),
        "-o",
        str(tmp_path / "r.html"),
        "--vae",
        str(tmp_path / "nothing"),
        "--device",
        "cpu",
    ]
    assert report_main(argv) == 1
    assert "nothing" in capsys.readouterr().err


def test_plots_of_absent_kinds_are_left_out(dataset):
    root, _ = dataset
    shutil.rmtree(root / "pairs")
    html = build_report(str(root), samples=3, run_validation=False)
    page = parse(html)
    assert [p for p in PLOTS if p not in page.plots] == PLOTS[5:10]  # instruction, judge scores
    assert "instruction and judge-score plots (no pairs)" in html
    assert page.figures == ["clips"] * 3
