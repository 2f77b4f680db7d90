"""Users' own models: `--model package.module:factory` (or `path/to/file.py:factory`).

The factory is called with the keyword arguments `device` (str) and `precision` (one of
fp32, bf16, fp16, amp_bf16), or with those of them its signature names, and must return an
`EvalModel`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from typing import Callable

from flamingo_eval.errors import InputError
from flamingo_eval.models.base import EvalModel

logger = logging.getLogger(__name__)


def is_factory_reference(name: str) -> bool:
    """Tell a `module:function` reference from a preset name (presets have no colon)."""
    return ":" in name


def import_factory(reference: str) -> Callable[..., EvalModel]:
    """Import the function named by `package.module:function` or `file.py:function`."""
    module_name, _, attribute = reference.rpartition(":")
    if not module_name or not attribute:
        raise InputError(f"--model {reference!r} must be package.module:function or file.py:function")
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name), reference)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise InputError(
                f"--model {reference!r}: module {error.name!r} not found; install the package or "
                "add its folder to PYTHONPATH"
            ) from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise InputError(f"--model {reference!r}: {module_name} has no attribute {attribute!r}")
    if not callable(factory):
        raise InputError(f"--model {reference!r}: {attribute} is not callable")
    return factory


def _import_file(path: Path, reference: str):
    if not path.is_file():
        raise InputError(f"--model {reference!r}: file {path} not found")
    module_name = f"flamingo_eval_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_user_model(reference: str, device: str, precision: str) -> EvalModel:
    """Import and call a user's factory; check that it returned an EvalModel."""
    factory = import_factory(reference)
    offered = {"device": device, "precision": precision}
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    arguments = {key: value for key, value in offered.items() if takes_any or key in parameters}
    logger.info("building model with %s(%s)", reference, arguments)
    model = factory(**arguments)
    if not isinstance(model, EvalModel):
        raise InputError(
            f"--model {reference!r} returned a {type(model).__name__}; it must return an instance "
            "of flamingo_eval.models.EvalModel (implementing generate, rank and identity)"
        )
    return model
