import json
import subprocess
import sys
from pathlib import Path

from flamingo_eval.data.example import Example, ImageRef
from flamingo_eval.samplers import RandomSampler, draw_trial, stable_seed


def make_examples(prefix: str, count: int) -> list[Example]:
    return [
        Example(id=f"{prefix}{i}", image=ImageRef(f"{prefix}{i}", Path(f"/{prefix}{i}.jpg")), fields={})
        for i in range(count)
    ]


def demo_ids(seed: int, order: list[int], shots: int = 4) -> dict[str, list[str]]:
    train = make_examples("t", 300)
    evals = make_examples("e", 50)
    trial = draw_trial(seed, evals, train, num_samples=20, query_set_size=64)
    sampler = RandomSampler(trial.query_set, seed)
    items = [trial.eval_examples[index] for index in order]
    return {item.id: [demo.id for demo in sampler.demos(item, shots)] for item in items}


def test_stable_seed_is_fixed_value():
    # sha256("42\x1f17") read as little-endian: fixed across processes and platforms.
    assert stable_seed(42, "17") == stable_seed(42, "17")
    assert stable_seed(42, "17") != stable_seed(43, "17")
    assert stable_seed(42, "17") != stable_seed(42, "18")


def test_demos_independent_of_order():
    forward = demo_ids(42, list(range(20)))
    backward = demo_ids(42, list(reversed(range(20))))
    assert forward == backward


def test_demos_differ_between_items_and_seeds():
    ids = demo_ids(42, list(range(20)))
    assert len({tuple(value) for value in ids.values()}) > 15
    assert demo_ids(1, list(range(20))) != ids


def test_demos_nested_across_shots():
    four = demo_ids(42, list(range(20)), shots=4)
    eight = demo_ids(42, list(range(20)), shots=8)
    for item_id, demos in four.items():
        assert eight[item_id][:4] == demos


def test_demos_identical_in_separate_process():
    code = (
        "import json, sys; sys.path.insert(0, %r); "
        "from tests.test_samplers import demo_ids; "
        "print(json.dumps(demo_ids(42, list(range(20)))))"
    ) % str(Path(__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(result.stdout) == demo_ids(42, list(range(20)))


def test_trial_matches_openflamingo_numpy_draws():
    import numpy as np

    train = make_examples("t", 300)
    evals = make_examples("e", 50)
    trial = draw_trial(7, evals, train, num_samples=10, query_set_size=64)
    np.random.seed(7)
    expected_eval = np.random.choice(50, 10, replace=False)
    expected_query = np.random.choice(300, 64, replace=False)
    assert [e.id for e in trial.eval_examples] == [f"e{i}" for i in expected_eval]
    assert [e.id for e in trial.query_set] == [f"t{i}" for i in expected_query]


def test_trial_clamps_sizes():
    trial = draw_trial(0, make_examples("e", 5), make_examples("t", 10), num_samples=100, query_set_size=2048)
    assert len(trial.eval_examples) == 5
    assert len(trial.query_set) == 10
