"""The Hugging Face `datasets` source: the same samples exported to parquet give the same run.

Each task's sample is exported with `export_parquet` into a folder that contains only the parquet
files (and ImageNet's class names), then evaluated with `source="hf"` offline. Its prediction
records must equal those of the run from the official files, except for the image paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from task_run_settings import TINY_RUN_SAMPLES
from flamingo_eval.data import load_split
from flamingo_eval.data.hf_export import export_parquet, main
from flamingo_eval.errors import InputError
from flamingo_eval.registry import load_task

# flickr30k is left out: it shares the coco loader and is the slowest task on the tiny model.
HF_TASKS = ("okvqa", "vqav2", "textvqa", "vizwiz", "coco", "imagenet", "hateful_memes")
# Record fields compared one by one, for a readable failure; the rest is compared as a whole.
# Generation records have raw_output, and ranking records have top_k and class scores.
COMPARED_FIELDS = (
    "sample_id", "demo_ids", "prompt", "raw_output", "prediction", "target", "top_k", "scores",
)
# Record fields that depend on where the images are read from.
SOURCE_DEPENDENT_FIELDS = ("image_path",)


@pytest.fixture(scope="module")
def offline_datasets(tmp_path_factory):
    """Make `datasets` offline and give it a private cache, for the whole module.

    `datasets` reads HF_DATASETS_OFFLINE and HF_HUB_OFFLINE when it is imported, so the
    environment variables are set for child processes and its config for this process.
    """
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))
        yield


@pytest.fixture(scope="module")
def hf_data(offline_datasets, task_sample, tmp_path_factory):
    """Return a function that exports a task's sample to a parquet-only data folder, once."""
    folders: dict[str, Path] = {}

    def export(task_name: str) -> Path:
        if task_name not in folders:
            folder = tmp_path_factory.mktemp("hf_data") / task_name
            export_parquet(load_task(task_name), task_sample(task_name), folder)
            folders[task_name] = folder
        return folders[task_name]

    return export


@pytest.fixture(scope="module")
def hf_run(tiny_model, hf_data, tmp_path_factory):
    """Return a function that runs a task from its parquet files as the shared files run does."""
    from flamingo_eval.evaluate import evaluate
    from flamingo_eval.runner import RunOptions

    runs: dict[str, Path] = {}

    def run(task_name: str) -> Path:
        if task_name not in runs:
            output_dir = tmp_path_factory.mktemp("hf_runs") / task_name
            evaluate(
                tiny_model,
                [load_task(task_name)],
                RunOptions(shots=[0, 4], num_samples=TINY_RUN_SAMPLES),
                data_root=hf_data(task_name),
                source="hf",
                output_dir=output_dir,
                command=[],
            )
            runs[task_name] = output_dir
        return runs[task_name]

    return run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in SOURCE_DEPENDENT_FIELDS}


@pytest.mark.parametrize("task_name", HF_TASKS)
def test_hf_source_gives_same_predictions(task_name, tiny_task_run, hf_run):
    files_records = read_jsonl(tiny_task_run(task_name) / "predictions.jsonl")
    hf_records = read_jsonl(hf_run(task_name) / "predictions.jsonl")

    assert len(hf_records) == len(files_records) == 2 * TINY_RUN_SAMPLES
    for files_record, hf_record in zip(files_records, hf_records):
        for key in COMPARED_FIELDS:
            where = f"{task_name} {files_record['sample_id']}: {key}"
            assert hf_record.get(key) == files_record.get(key), where
        assert comparable(hf_record) == comparable(files_record)


@pytest.mark.parametrize("task_name", HF_TASKS)
def test_hf_source_gives_same_summary(task_name, tiny_task_run, hf_run):
    files_summary = pd.read_csv(tiny_task_run(task_name) / "summary.csv")
    hf_summary = pd.read_csv(hf_run(task_name) / "summary.csv")
    pd.testing.assert_frame_equal(hf_summary, files_summary)

    metadata = json.loads((hf_run(task_name) / "metadata.json").read_text())
    assert metadata["data_source"] == "hf"


@pytest.mark.parametrize("task_name", HF_TASKS)
def test_hf_records_have_no_image_paths(task_name, hf_run):
    records = read_jsonl(hf_run(task_name) / "predictions.jsonl")
    assert all(record["image_path"] is None for record in records)


@pytest.mark.parametrize("task_name", ("okvqa", "imagenet"))
def test_exported_folder_has_no_images(task_name, hf_data):
    folder = hf_data(task_name)
    suffixes = {path.suffix for path in folder.rglob("*") if path.is_file()}
    assert suffixes <= {".parquet", ".txt"}
    assert sorted(path.name for path in (folder / "hf").iterdir()) == [
        "train-00000-of-00001.parquet",
        "val-00000-of-00001.parquet",
    ]


def test_hf_source_loads_every_split_alike(hf_data, task_sample):
    """Every split of every task, the unannotated test-dev splits included, loads identically."""
    for task_name in (*HF_TASKS, "flickr30k"):
        task = load_task(task_name)
        folder = hf_data(task_name)
        for split in task.data.splits:
            from_files = load_split(task, split, task_sample(task_name), "files")
            from_hf = load_split(task, split, folder, "hf")
            where = f"{task_name} {split}"
            assert [e.id for e in from_hf] == [e.id for e in from_files], where
            assert [e.fields for e in from_hf] == [e.fields for e in from_files], where
            assert [e.target for e in from_hf] == [e.target for e in from_files], where
            assert [e.image.key for e in from_hf] == [e.image.key for e in from_files], where
            first_files, first_hf = from_files[0].image.open(), from_hf[0].image.open()
            assert first_hf.size == first_files.size, where
            assert first_hf.tobytes() == first_files.tobytes(), where


def test_export_writes_integer_question_ids(hf_data):
    import pyarrow.parquet as parquet

    table = parquet.read_table(hf_data("vqav2") / "hf" / "val-00000-of-00001.parquet")
    assert str(table.schema.field("question_id").type) == "int64"
    assert "answers" in table.column_names
    testdev = parquet.read_table(hf_data("vqav2") / "hf" / "testdev-00000-of-00001.parquet")
    assert "answers" not in testdev.column_names


def test_export_shards_and_replaces_stale_files(offline_datasets, task_sample, tmp_path):
    task = load_task("hateful_memes")
    sample = task_sample("hateful_memes")
    first = export_parquet(task, sample, tmp_path, splits=["train"], max_shard_image_bytes=20_000)
    assert len(first) > 2
    assert [path.name for path in first][-1].endswith(f"-of-{len(first):05d}.parquet")
    examples = load_split(task, "train", tmp_path, "hf")
    expected = [example.id for example in load_split(task, "train", sample)]
    assert [example.id for example in examples] == expected

    second = export_parquet(task, sample, tmp_path, splits=["train"])
    assert [path.name for path in second] == ["train-00000-of-00001.parquet"]
    remaining = sorted(path.name for path in (tmp_path / "hf").glob("train-*.parquet"))
    assert remaining == ["train-00000-of-00001.parquet"]


def test_export_rejects_an_unknown_split(task_sample, tmp_path):
    with pytest.raises(InputError, match="unknown split 'validation'"):
        export_parquet(load_task("okvqa"), task_sample("okvqa"), tmp_path, splits=["validation"])


def test_export_main_writes_files(offline_datasets, task_sample, tmp_path, capsys):
    sample = task_sample("hateful_memes")
    exit_code = main(
        ["hateful_memes", str(sample), "--output", str(tmp_path), "--split", "dev_seen"]
    )
    assert exit_code == 0
    written = tmp_path / "hf" / "dev_seen-00000-of-00001.parquet"
    assert capsys.readouterr().out.strip() == f"wrote {written}"
    assert written.is_file()



def test_export_falls_back_for_a_hub_split(offline_datasets, task_sample, tmp_path, caplog):
    """A split read from the hub is written to hf/<split>-*.parquet, with a warning."""
    import yaml

    from flamingo_eval.registry import parse_task_file, task_files

    raw = yaml.safe_load(task_files()["okvqa"].read_text())
    raw["data"]["hf"]["data_files"] = {"train": "local/train-*.parquet"}
    raw["data"]["hf"]["splits"] = {"val": {"path": "lmms-lab/OK-VQA", "split": "val2014"}}
    task_path = tmp_path / "okvqa_hub.yaml"
    task_path.write_text(yaml.safe_dump(raw))

    paths = export_parquet(parse_task_file(task_path), task_sample("okvqa"), tmp_path / "data")

    assert [path.relative_to(tmp_path / "data").as_posix() for path in paths] == [
        "local/train-00000-of-00001.parquet",
        "hf/val-00000-of-00001.parquet",
    ]
    assert "set data.hf.data_files.val" in caplog.text
