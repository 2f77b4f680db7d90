"""RICES: demonstrations retrieved by CLIP image similarity, with a feature cache on disk.

`RicesSampler` has the interface of `flamingo_eval.samplers.RandomSampler`. `load_rices_index`
loads or builds the features of a task's splits; `cache_task_features` builds them ahead of a
run; `retrieve` is the batched exact top-k search underneath.
"""

from flamingo_eval.rices.cache import (
    default_feature_cache_dir,
    load_or_build_features,
)
from flamingo_eval.rices.encoder import (
    DEFAULT_ENCODER,
    DEFAULT_PRETRAINED,
    ImageEncoder,
    LazyImageEncoder,
    compute_image_features,
    load_image_encoder,
    parse_pretrained,
)
from flamingo_eval.rices.retrieval import TopK, retrieve, retrieve_top_k
from flamingo_eval.rices.sampler import DEMO_ORDERS, RicesIndex, RicesSampler
from flamingo_eval.rices.support import class_balanced_indices, class_balanced_support_set
from flamingo_eval.rices.task_features import RicesOptions, cache_task_features, load_rices_index

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_PRETRAINED",
    "DEMO_ORDERS",
    "ImageEncoder",
    "LazyImageEncoder",
    "RicesIndex",
    "RicesOptions",
    "RicesSampler",
    "TopK",
    "cache_task_features",
    "class_balanced_indices",
    "class_balanced_support_set",
    "compute_image_features",
    "default_feature_cache_dir",
    "load_image_encoder",
    "load_or_build_features",
    "load_rices_index",
    "parse_pretrained",
    "retrieve",
    "retrieve_top_k",
]
