"""flamingo-eval: few-shot evaluation of Flamingo-style vision-language models."""

__version__ = "0.1.0"


def evaluate_model(*args, **kwargs):
    """Evaluate an in-memory model; see `flamingo_eval.api.evaluate_model`."""
    from flamingo_eval.api import evaluate_model as _evaluate_model

    return _evaluate_model(*args, **kwargs)
