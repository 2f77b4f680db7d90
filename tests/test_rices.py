"""RICES: retrieval order, exclusions and ties, the feature cache, support sets, demo order."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.errors import InputError
from flamingo_eval.rices import (
    LazyImageEncoder,
    RicesIndex,
    RicesOptions,
    RicesSampler,
    cache_task_features,
    class_balanced_indices,
    class_balanced_support_set,
    load_image_encoder,
    load_or_build_features,
    load_rices_index,
    parse_pretrained,
    retrieve,
    retrieve_top_k,
)
from flamingo_eval.rices import encoder as encoder_module
from flamingo_eval.rices.cache import cache_paths
from flamingo_eval.rices.encoder import describe_preprocess

TINY_ENCODER = "tiny-vit"


def example(item_id: str, key: str, target=None) -> Example:
    return Example(id=item_id, image=ImageRef(key, Path(f"/images/{key}.jpg")), fields={}, target=target)


def unit(x: float, y: float) -> list[float]:
    norm = math.hypot(x, y)
    return [x / norm, y / norm]


# Query (1, 0) against unit vectors whose cosines with it are their x coordinates.
HAND_POOL = [
    ("p0", "k0", unit(0.0, 1.0)),  # cosine 0
    ("p1", "k1", unit(0.6, 0.8)),  # cosine 0.6
    ("p2", "query-image", unit(1.0, 0.0)),  # cosine 1, but the query's own image
    ("p3", "k3", unit(0.8, 0.6)),  # cosine 0.8
    ("p4", "k4", unit(-1.0, 0.0)),  # cosine -1
    ("p5", "k5", unit(0.28, 0.96)),  # cosine 0.28
    ("p6", "query-image", unit(0.96, 0.28)),  # cosine 0.96, also the query's own image
]


def hand_index(**kwargs) -> tuple[RicesIndex, Example]:
    pool = [example(item_id, key) for item_id, key, _ in HAND_POOL]
    features = torch.tensor([vector for _, _, vector in HAND_POOL])
    query = example("q", "query-image")
    index = RicesIndex(pool, features, [query], torch.tensor([[1.0, 0.0]]), **kwargs)
    return index, query


def test_demos_ascending_similarity_hand_cosines():
    index, query = hand_index()
    demos = RicesSampler(index).demos(query, 3)
    # Cosines without the query's own image: p3 0.8 > p1 0.6 > p5 0.28; most similar last.
    assert [demo.id for demo in demos] == ["p5", "p1", "p3"]


def test_retrieve_scores_are_cosines():
    _, query = hand_index()
    features = torch.tensor([vector for _, _, vector in HAND_POOL])
    top = retrieve_top_k(torch.tensor([[1.0, 0.0]]), features, 4)
    assert top.indices.tolist() == [[2, 6, 3, 1]]
    assert top.scores[0].tolist() == pytest.approx([1.0, 0.96, 0.8, 0.6], abs=1e-6)


def test_own_image_never_retrieved():
    index, query = hand_index()
    demos = RicesSampler(index).demos(query, 5)
    keys = [demo.image.key for demo in demos]
    assert "query-image" not in keys
    assert [demo.id for demo in demos] == ["p4", "p0", "p5", "p1", "p3"]


def test_too_many_demos_after_exclusion_rejected():
    index, query = hand_index()
    with pytest.raises(InputError, match="5 examples"):
        RicesSampler(index).demos(query, 6)


def test_exclude_keeps_other_identical_images():
    pool = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    indices = retrieve(torch.tensor([[1.0, 0.0]]), pool, 2, exclude=[[0]])
    assert indices.tolist() == [[1, 2]]


def tie_pool() -> torch.Tensor:
    """Pool rows 1, 4 and 7 are bit-identical and the most similar to query (1, 0)."""
    rows = [unit(0.1, 1.0)] * 9
    for row in (1, 4, 7):
        rows[row] = unit(0.9, 0.2)
    rows[3] = unit(0.5, 0.5)
    rows[8] = unit(0.5, 0.5)
    return torch.tensor(rows)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 100])
def test_ties_lower_pool_index_first(chunk):
    query = torch.tensor([[1.0, 0.0]])
    for _ in range(3):
        top2 = retrieve(query, tie_pool(), 2, pool_chunk_size=chunk)
        assert top2.tolist() == [[1, 4]]
        top5 = retrieve(query, tie_pool(), 5, pool_chunk_size=chunk)
        assert top5.tolist() == [[1, 4, 7, 3, 8]]


def test_ties_in_demos_put_lowest_index_last():
    pool = [example(f"t{i}", f"k{i}") for i in range(9)]
    query = example("q", "query")
    index = RicesIndex(pool, tie_pool(), [query], torch.tensor([[1.0, 0.0]]), pool_chunk_size=2)
    demos = RicesSampler(index).demos(query, 4)
    assert [demo.id for demo in demos] == ["t3", "t7", "t4", "t1"]


def test_ties_at_boundary_of_big_chunk():
    # 40 identical rows in one chunk, k = 5: topk alone may pick any five of them.
    pool = torch.tensor([unit(1.0, 0.0)] * 40 + [unit(0.0, 1.0)] * 10)
    permutation = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    pool = pool[permutation]
    expected = sorted(int(i) for i in (permutation < 40).nonzero().flatten())[:5]
    indices = retrieve(torch.tensor([[1.0, 0.0]]), pool, 5, pool_chunk_size=64)
    assert indices.tolist() == [expected]


def random_unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)


@pytest.mark.parametrize(
    ("query_batch", "chunk"), [(1, 1), (5, 7), (64, 64), (16, 503), (1000, 1000)]
)
def test_chunked_equals_brute_force(query_batch, chunk):
    queries = random_unit(37, 16, seed=1)
    pool = random_unit(503, 16, seed=2)
    exclude = [[(3 * row) % 503, (5 * row + 1) % 503] for row in range(37)]

    scores = queries @ pool.T
    for row, indices in enumerate(exclude):
        scores[row, indices] = float("-inf")
    expected = scores.topk(7, dim=1).indices

    found = retrieve(
        queries, pool, 7, exclude=exclude, query_batch_size=query_batch, pool_chunk_size=chunk
    )
    assert torch.equal(found, expected)


def test_faiss_backend_equals_torch():
    pytest.importorskip("faiss")
    queries = random_unit(20, 16, seed=4)
    pool = random_unit(300, 16, seed=5)
    exclude = [[row] for row in range(20)]
    ours = retrieve(queries, pool, 6, exclude=exclude)
    theirs = retrieve(queries, pool, 6, exclude=exclude, backend="faiss")
    assert torch.equal(ours, theirs)


def test_unknown_backend_rejected():
    with pytest.raises(InputError, match="backend"):
        retrieve(random_unit(2, 4, 0), random_unit(5, 4, 1), 2, backend="annoy")


# Feature cache and encoder ---------------------------------------------------------------


def write_png(path: Path, color: tuple[int, int, int], size: int = 40) -> Path:
    image = Image.new("RGB", (size, size), color)
    for x in range(0, size, 8):
        image.putpixel((x, x), (255 - color[0], 255 - color[1], 255 - color[2]))
    image.save(path)
    return path


@pytest.fixture()
def png_examples(tmp_path) -> list[Example]:
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (10, 10, 10)]
    examples = []
    for index, color in enumerate(colors):
        path = write_png(tmp_path / f"image{index}.png", color)
        examples.append(Example(f"item{index}", ImageRef(f"img{index}", path), {}, target=index % 2))
    # A second question on the first image: its row is shared, not recomputed.
    examples.append(Example("item5", ImageRef("img0", tmp_path / "image0.png"), {}, target=1))
    return examples


@pytest.fixture(scope="module")
def tiny_encoder():
    torch.manual_seed(0)
    return load_image_encoder(TINY_ENCODER, None)


class CountingEncoder:
    """Wraps an encoder and counts the images it embeds."""

    def __init__(self, encoder):
        self.inner = encoder
        self.name = encoder.name
        self.pretrained = encoder.pretrained
        self.preprocess = encoder.preprocess
        self.preprocess_description = encoder.preprocess_description
        self.images = 0

    def encode(self, pixels):
        self.images += pixels.shape[0]
        return self.inner.encode(pixels)


@pytest.fixture()
def counting(tiny_encoder, monkeypatch):
    counter = CountingEncoder(tiny_encoder)
    monkeypatch.setattr(encoder_module.LazyImageEncoder, "get", lambda self: counter)
    return counter


def build(examples, cache_dir, **kwargs):
    return load_or_build_features(
        examples, TINY_ENCODER, None, cache_dir, batch_size=2, name="demo-train", progress=False, **kwargs
    )


def test_features_normalised_one_row_per_item(png_examples, tmp_path, counting):
    features = build(png_examples, tmp_path / "cache")
    assert features.shape == (6, 32)
    assert torch.allclose(features.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(features[5], features[0])
    assert counting.images == 5


def test_cache_reused_without_embedding(png_examples, tmp_path, counting):
    first = build(png_examples, tmp_path / "cache")
    assert counting.images == 5
    second = build(png_examples, tmp_path / "cache")
    assert counting.images == 5
    assert torch.equal(first, second)


def test_cache_files_and_manifest(png_examples, tmp_path, counting):
    build(png_examples, tmp_path / "cache")
    paths = cache_paths(tmp_path / "cache", "demo-train", TINY_ENCODER, None)
    manifest = json.loads(paths.manifest.read_text())
    assert paths.features.exists()
    assert manifest["encoder"] == TINY_ENCODER
    assert manifest["pretrained"] is None
    assert manifest["item_ids"] == [f"item{i}" for i in range(6)]
    assert manifest["image_keys"] == [f"img{i}" for i in range(5)]
    assert manifest["item_rows"] == [0, 1, 2, 3, 4, 0]
    assert manifest["shape"] == [5, 32]
    assert manifest["dtype"] == "float32"
    assert manifest["preprocess"].startswith("Compose(")
    assert len(manifest["dataset_fingerprint"]) == 64


def test_derived_preprocess_matches_built_transform(tiny_encoder):
    assert describe_preprocess(TINY_ENCODER, None) == tiny_encoder.preprocess_description


def test_mismatched_manifest_rebuilt_with_warning(png_examples, tmp_path, counting, caplog):
    build(png_examples, tmp_path / "cache")
    paths = cache_paths(tmp_path / "cache", "demo-train", TINY_ENCODER, None)
    manifest = json.loads(paths.manifest.read_text())
    manifest["preprocess"] = "Compose(Resize(size=32))"
    paths.manifest.write_text(json.dumps(manifest))

    with caplog.at_level(logging.WARNING, logger="flamingo_eval.rices.cache"):
        build(png_examples, tmp_path / "cache")
    assert counting.images == 10
    assert "'preprocess'" in caplog.text
    rebuilt = json.loads(paths.manifest.read_text())
    assert rebuilt["preprocess"] != "Compose(Resize(size=32))"


def test_mismatched_manifest_rejected_when_strict(png_examples, tmp_path, counting):
    build(png_examples, tmp_path / "cache")
    changed = png_examples[:-1]
    with pytest.raises(InputError, match="'dataset_fingerprint'"):
        build(changed, tmp_path / "cache", strict=True)
    assert counting.images == 5


def test_changed_image_file_detected(png_examples, tmp_path, counting):
    build(png_examples, tmp_path / "cache")
    write_png(png_examples[2].image.path, (1, 2, 3), size=48)
    with pytest.raises(InputError, match="'dataset_fingerprint'"):
        build(png_examples, tmp_path / "cache", strict=True)


def test_missing_cache_rejected_when_strict(png_examples, tmp_path, counting):
    with pytest.raises(InputError, match="not found"):
        build(png_examples, tmp_path / "cache", strict=True)
    assert counting.images == 0


def test_corrupt_features_file_rebuilt(png_examples, tmp_path, counting):
    build(png_examples, tmp_path / "cache")
    paths = cache_paths(tmp_path / "cache", "demo-train", TINY_ENCODER, None)
    paths.features.write_bytes(b"not a safetensors file")
    features = build(png_examples, tmp_path / "cache")
    assert features.shape == (6, 32)
    assert counting.images == 10


def test_unknown_encoder_and_tag_rejected():
    with pytest.raises(InputError, match="unknown RICES encoder"):
        load_image_encoder("no-such-model", None)
    with pytest.raises(InputError, match="unknown pretrained tag"):
        load_image_encoder("ViT-L-14", "no-such-tag")


def test_tiny_tower_retrieves_same_picture_first(tmp_path, tiny_encoder):
    colors = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (240, 240, 240)]
    pool = [
        Example(f"train{i}", ImageRef(f"train-img{i}", write_png(tmp_path / f"t{i}.png", color)), {})
        for i, color in enumerate(colors)
    ]
    # The query shows the same picture as train2 under another key, and shares train0's key.
    query = Example("val0", ImageRef("train-img0", write_png(tmp_path / "q.png", colors[2])), {})
    pool_features = load_or_build_features(
        pool, TINY_ENCODER, None, tmp_path / "cache", name="t-train", encoder=tiny_encoder, progress=False
    )
    query_features = load_or_build_features(
        [query], TINY_ENCODER, None, tmp_path / "cache", name="t-val", encoder=tiny_encoder, progress=False
    )
    index = RicesIndex(pool, pool_features, [query], query_features)
    demos = RicesSampler(index).demos(query, 3)
    assert demos[-1].id == "train2"
    assert "train0" not in [demo.id for demo in demos]


def test_task_cache_then_index_from_cache(okvqa_dir, tmp_path, monkeypatch):
    from flamingo_eval import data as data_loading
    from flamingo_eval.registry import load_task

    task = load_task("okvqa")
    options = RicesOptions(encoder=TINY_ENCODER, pretrained=None, cache_dir=tmp_path / "cache", batch_size=32)
    torch.manual_seed(0)
    paths = cache_task_features(task, okvqa_dir, options)
    assert [path.name for path in paths] == [
        "okvqa-train.tiny-vit-random.safetensors",
        "okvqa-val.tiny-vit-random.safetensors",
    ]

    def fail_to_load(*args, **kwargs):
        raise AssertionError("the encoder was loaded although every split is cached")

    monkeypatch.setattr(encoder_module, "load_image_encoder", fail_to_load)
    train = data_loading.load_split(task, task.data.demo_split, okvqa_dir)
    val = data_loading.load_split(task, task.data.eval_split, okvqa_dir)
    index = load_rices_index(task, train, val, options)
    sampler = RicesSampler(index, seed=42)
    sampler.prepare(val, 8)
    for item in val[:10]:
        demos = sampler.demos(item, 4)
        assert len(demos) == 4
        assert item.image.key not in {demo.image.key for demo in demos}
        assert [demo.id for demo in demos] == [demo.id for demo in sampler.demos(item, 8)[-4:]]


# Support sets and demo order ---------------------------------------------------------------


def labelled(counts: list[int]) -> list[Example]:
    examples = []
    for label, count in enumerate(counts):
        examples.extend(example(f"c{label}-{i}", f"c{label}-{i}", target=label) for i in range(count))
    return examples


def test_support_set_counts_per_class():
    examples = labelled([5, 9, 3, 12])
    support = class_balanced_support_set(examples, 3, seed=42)
    counts = {label: sum(1 for item in support if item.target == label) for label in range(4)}
    assert counts == {0: 3, 1: 3, 2: 3, 3: 3}
    assert len({item.id for item in support}) == 12


def test_support_set_deterministic_and_seeded():
    examples = labelled([20, 20, 20])
    first = class_balanced_indices(examples, 4, seed=1)
    assert first == class_balanced_indices(examples, 4, seed=1)
    assert first == sorted(first)
    others = [class_balanced_indices(examples, 4, seed=seed) for seed in range(2, 6)]
    assert any(other != first for other in others)


def test_support_set_rejects_small_or_missing_class():
    with pytest.raises(InputError, match="class 2 has 3"):
        class_balanced_indices(labelled([5, 5, 3]), 4, seed=0)
    with pytest.raises(InputError, match="class 3 has 0"):
        class_balanced_indices(labelled([5, 5, 5]), 2, seed=0, num_classes=4)
    with pytest.raises(InputError, match="not a class index"):
        class_balanced_indices([example("a", "a", target="cat")], 1, seed=0)


def test_restricted_pool_retrieves_only_support_set():
    index, query = hand_index()
    restricted = index.restrict_pool([0, 1, 4, 5])
    demos = RicesSampler(restricted).demos(query, 2)
    assert [demo.id for demo in demos] == ["p5", "p1"]


def test_random_order_is_seeded_permutation():
    pool = [example(f"p{i}", f"k{i}") for i in range(40)]
    queries = [example(f"q{i}", f"qk{i}") for i in range(10)]
    index = RicesIndex(pool, random_unit(40, 8, 6), queries, random_unit(10, 8, 7))
    retrieved = RicesSampler(index, seed=3, order="retrieved")
    shuffled = RicesSampler(index, seed=3, order="random")
    changed = 0
    for query in queries:
        base = [demo.id for demo in retrieved.demos(query, 8)]
        mixed = [demo.id for demo in shuffled.demos(query, 8)]
        assert sorted(mixed) == sorted(base)
        assert mixed == [demo.id for demo in RicesSampler(index, seed=3, order="random").demos(query, 8)]
        changed += mixed != base
    assert changed >= 8
    other_seed = RicesSampler(index, seed=4, order="random")
    assert any(
        [d.id for d in other_seed.demos(q, 8)] != [d.id for d in shuffled.demos(q, 8)] for q in queries
    )


def test_unknown_demo_order_rejected():
    index, _ = hand_index()
    with pytest.raises(InputError, match="demo order"):
        RicesSampler(index, order="reversed")


def test_sampler_name_and_zero_count():
    index, query = hand_index()
    sampler = RicesSampler(index)
    assert sampler.name == "rices"
    assert sampler.demos(query, 0) == []


def test_lazy_encoder_not_loaded_until_needed(monkeypatch):
    calls = []
    monkeypatch.setattr(encoder_module, "load_image_encoder", lambda *args: calls.append(args) or "encoder")
    lazy = LazyImageEncoder(TINY_ENCODER, None)
    assert calls == []
    assert lazy.get() == "encoder"
    assert lazy.get() == "encoder"
    assert len(calls) == 1


def test_numpy_int_targets_accepted():
    examples = [example(f"n{i}", f"n{i}", target=np.int64(i % 2)) for i in range(6)]
    assert len(class_balanced_indices(examples, 2, seed=0)) == 4


def test_parse_pretrained_random_words():
    assert parse_pretrained("none") is None
    assert parse_pretrained("Random") is None
    assert parse_pretrained("openai") == "openai"
