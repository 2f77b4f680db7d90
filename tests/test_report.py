"""Tests of `flamingo-eval report`: the HTML and Markdown files, and the page in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flamingo_eval import report
from flamingo_eval.errors import InputError
from flamingo_eval.run_reader import load_runs
from run_folder_builder import write_run

REPO_ROOT = Path(__file__).resolve().parent.parent
# Flags that keep headless Chromium off the network and away from any existing profile.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PLOT_LINE_COLOR = (31, 119, 180)  # matplotlib's first line colour, C0 (#1f77b4)


class ElementCollector(HTMLParser):
    """Collect tables, images and their attributes from an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tables = 0
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables += 1
        if tag == "img":
            self.images.append({name: value or "" for name, value in attrs})


def parse_elements(text: str) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(text)
    return collector


def write_image(path: Path, color: tuple[int, int, int]) -> Path:
    image = Image.new("RGB", (64, 48), color)
    image.putpixel((3, 3), (0, 0, 0))
    image.save(path)
    return path


@pytest.fixture
def report_runs(tmp_path):
    """Two runs on OK-VQA (shots 0, 4, 8) and ImageNet (shots 0, 4); q2 has an image path."""
    image = write_image(tmp_path / "q2.png", (200, 30, 30))
    vqa_a = {(shots, 1): {f"q{i}": float((i * 30) % 100) for i in range(6)} for shots in (0, 4, 8)}
    vqa_b = {(shots, 1): {f"q{i}": float(min(100, (i * 30) % 100 + shots * 5)) for i in range(6)} for shots in (0, 4, 8)}
    imagenet_a = {(shots, 1): {f"i{i}": 100.0 if i < 5 else 0.0 for i in range(10)} for shots in (0, 4)}
    imagenet_b = {(shots, 1): {f"i{i}": 100.0 if i < 7 else 0.0 for i in range(10)} for shots in (0, 4)}
    extra = {"q2": {"image_path": str(image)}}
    metrics = {"imagenet": "top1"}
    run_a = write_run(tmp_path / "step-1000", {"okvqa": vqa_a, "imagenet": imagenet_a},
                      metrics=metrics, model="checkpoint-1000", records_extra=extra)
    run_b = write_run(tmp_path / "step-2000", {"okvqa": vqa_b, "imagenet": imagenet_b},
                      metrics=metrics, model="checkpoint-2000", records_extra=extra)
    return run_a, run_b


def test_report_html_is_self_contained(report_runs, tmp_path):
    html_path, _ = report.write_report(load_runs(list(report_runs)), tmp_path / "report",
                                       report.CompareOptions(bootstrap_samples=100))
    text = html_path.read_text(encoding="utf-8")
    elements = parse_elements(text)

    # Runs, metadata per run, and per task: scores, paired tests, examples.
    assert elements.tables >= 2 + 2 * 2 + 2
    plots = [image for image in elements.images if image.get("class") == "plot"]
    assert len(plots) == 2
    assert all(image["src"].startswith("data:image/png;base64,") for image in elements.images)
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    plot = Image.open(io.BytesIO(base64.b64decode(plots[0]["src"].split(",", 1)[1])))
    assert plot.size[0] > 300
    assert "checkpoint-1000" in text
    assert "Paired tests against step-1000" in text
    assert "paired percentile bootstrap" in text
    assert "per_item_demo_sampling" in text


def test_report_shows_example_image_from_path(report_runs, tmp_path):
    content = report.build_content(load_runs(list(report_runs)), report.CompareOptions(bootstrap_samples=50), 6, True)
    okvqa = [example for example in content.examples if example.task == "okvqa"]

    assert [example.shots for example in okvqa] == [8] * 6
    by_id = {example.sample_id: example for example in okvqa}
    thumbnail = Image.open(io.BytesIO(by_id["q2"].image_png))
    assert thumbnail.getpixel((10, 10)) == (200, 30, 30)
    # Items on which the runs' scores differ come first: at 8 shots B adds 40 points (capped at 100).
    assert okvqa[0].predictions["step-2000"].endswith("(vqa_accuracy 40)")


def test_report_examples_without_images(report_runs, tmp_path, caplog):
    content = report.build_content(load_runs(list(report_runs)), report.CompareOptions(bootstrap_samples=50), 2, True)
    imagenet = [example for example in content.examples if example.task == "imagenet"]

    # No image path and no loadable data folder: the report still lists the predictions.
    assert len(imagenet) == 2
    assert all(example.image_png is None for example in imagenet)


def test_report_loads_images_through_task_loader(okvqa_dir, tmp_path):
    questions = json.loads((okvqa_dir / "OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    ids = [str(question["question_id"]) for question in questions[:3]]
    scores = {"okvqa": {(0, 1): {sample_id: 30.0 for sample_id in ids}}}
    run = write_run(tmp_path / "run", scores, data_dirs={"okvqa": str(okvqa_dir)},
                    task_files={"okvqa": str(REPO_ROOT / "tasks" / "okvqa.yaml")})

    content = report.build_content(load_runs([run]), report.CompareOptions(), 3, True)
    assert [example.sample_id for example in content.examples] == ids
    assert all(example.image_png is not None for example in content.examples)


def test_report_markdown_pictures_exist(report_runs, tmp_path):
    output = tmp_path / "report"
    _, markdown_path = report.write_report(load_runs(list(report_runs)), output, report.CompareOptions(bootstrap_samples=50))
    text = markdown_path.read_text(encoding="utf-8")

    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "plots/okvqa-vqa_accuracy-random.png" in pictures
    assert "plots/imagenet-top1-random.png" in pictures
    assert any(picture.startswith("images/") for picture in pictures)
    for picture in pictures:
        assert (output / picture).is_file(), picture
    assert "| shots | step-1000 | step-2000 | Δ step-2000 |" in text
    assert "| 0 | 50.00 ± 0.00 | 70.00 ± 0.00 | +20.00 |" in text


def test_report_cli_writes_files(report_runs, tmp_path, capsys):
    output = tmp_path / "cli-report"
    code = report.main([str(report_runs[0]), str(report_runs[1]), "--output", str(output),
                        "--bootstrap-samples", "50", "--examples", "1", "--no-images"])
    assert code == 0
    assert (output / "report.html").is_file()
    assert (output / "report.md").is_file()
    assert not (output / "images").exists()


def test_report_rejects_negative_examples(report_runs, tmp_path):
    with pytest.raises(InputError, match="--examples -1"):
        report.main([str(report_runs[0]), "--output", str(tmp_path / "r"), "--examples", "-1"])


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = "chromium not found; install it with: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this test must run)")
        pytest.skip(message + " (set CI=1 to make this a failure)")
    return path


def run_chromium(chromium: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_chromium(report_runs, tmp_path, chromium):
    html_path, _ = report.write_report(load_runs(list(report_runs)), tmp_path / "report",
                                       report.CompareOptions(bootstrap_samples=100))
    # A copy of the page that records each image's decoded width once the page has loaded.
    probe = html_path.with_name("probe.html")
    probe.write_text(
        html_path.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>window.addEventListener('load', () => { for (const image of document.images) "
            "image.setAttribute('data-natural-width', image.naturalWidth); });</script></body>",
        ),
        encoding="utf-8",
    )

    dumped = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    elements = parse_elements(dumped.stdout)
    assert elements.tables >= 6
    plots = [image for image in elements.images if image.get("class") == "plot"]
    assert len(plots) == 2
    for image in elements.images:
        assert int(image.get("data-natural-width", "0")) > 0, image.get("alt")

    screenshot = tmp_path / "report.png"
    shot = run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}",
                        "--window-size=1280,1600", "--hide-scrollbars", html_path.as_uri())
    assert shot.returncode == 0, shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1600, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    # The first plot's line colour appears on screen, so a plot was drawn.
    distance = np.abs(pixels - np.array(PLOT_LINE_COLOR)).sum(axis=2)
    assert (distance < 30).sum() > 50
