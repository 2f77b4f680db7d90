"""Image embeddings for RICES from an open_clip model chosen by name and pretrained tag."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Callable

import torch
from tqdm import tqdm

from flamingo_eval.data.example import ImageRef
from flamingo_eval.errors import InputError

logger = logging.getLogger(__name__)

# OpenFlamingo's RICES embeds images with CLIP ViT-L-14 and OpenAI's weights. Those weights were
# trained with QuickGELU, which open_clip 3.x applies only under the "-quickgelu" config name.
DEFAULT_ENCODER = "ViT-L-14-quickgelu"
DEFAULT_PRETRAINED = "openai"


RANDOM_WEIGHTS_TAGS = ("none", "random")


def parse_pretrained(text: str) -> str | None:
    """Read a command-line pretrained tag: "none" or "random" (any case) means random weights."""
    return None if text.strip().lower() in RANDOM_WEIGHTS_TAGS else text.strip()


class ImageEncoder:
    """An open_clip image tower and its evaluation transform, returning L2-normalised embeddings.

    `pretrained=None` builds random weights (used by tests, with `torch.manual_seed` set first).
    """

    def __init__(
        self,
        name: str,
        pretrained: str | None,
        model: torch.nn.Module,
        preprocess: Callable,
        device: str | torch.device = "cpu",
    ):
        self.name = name
        self.pretrained = pretrained
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.preprocess_description = repr(preprocess)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed a batch of preprocessed images (N, C, H, W); return (N, dim) float32 on the CPU."""
        embeddings = self.model.encode_image(pixels.to(self.device))
        return torch.nn.functional.normalize(embeddings.float(), dim=-1).cpu()


def load_image_encoder(
    name: str = DEFAULT_ENCODER,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str | torch.device = "cpu",
) -> ImageEncoder:
    """Build an open_clip model by architecture name and pretrained tag.

    Pretrained weights come from open_clip's download cache; with HF_HUB_OFFLINE=1 they must
    already be there. Raises InputError for an unknown name or tag, or weights that fail to load.
    """
    import open_clip

    from flamingo_eval.models.factory import register_open_clip_configs

    register_open_clip_configs()
    _check_names(name, pretrained)
    root_logger = logging.getLogger()

    def drop_random_weights_warning(record: logging.LogRecord) -> bool:
        # open_clip warns on the root logger that the weights are random, which is requested here.
        return not str(record.msg).startswith("No pretrained weights loaded")

    root_logger.addFilter(drop_random_weights_warning)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except (RuntimeError, FileNotFoundError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"RICES encoder {name} with pretrained {pretrained!r}: failed to load weights "
            f"({first_line}); download them once with network access, or choose other weights"
        ) from None
    finally:
        root_logger.removeFilter(drop_random_weights_warning)
    logger.info("loaded RICES encoder %s (pretrained %s) on %s", name, pretrained, device)
    return ImageEncoder(name, pretrained, model, preprocess, device)


class LazyImageEncoder:
    """Loads an `ImageEncoder` on first use, so several splits share it and fully cached runs
    never load it."""

    def __init__(self, name: str, pretrained: str | None, device: str | torch.device = "cpu"):
        self.name = name
        self.pretrained = pretrained
        self.device = device
        self._encoder: ImageEncoder | None = None

    def get(self) -> ImageEncoder:
        if self._encoder is None:
            self._encoder = load_image_encoder(self.name, self.pretrained, self.device)
        return self._encoder


def describe_preprocess(name: str, pretrained: str | None) -> str:
    """Return the repr of the evaluation transform open_clip would build, without building the model.

    It merges open_clip's default preprocessing with the pretrained tag's settings and the
    architecture's image size, the steps `open_clip.create_model` takes (open_clip 3.3). The
    feature cache compares this with the transform recorded when the features were built.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    from flamingo_eval.models.factory import register_open_clip_configs

    register_open_clip_configs()
    _check_names(name, pretrained)
    settings = asdict(PreprocessCfg())
    if pretrained:
        tag_settings = open_clip.get_pretrained_cfg(name, pretrained)
        if tag_settings:
            settings = merge_preprocess_dict(settings, tag_settings)
    settings["size"] = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    return repr(image_transform_v2(PreprocessCfg(**settings), is_train=False))


def _check_names(name: str, pretrained: str | None) -> None:
    import open_clip

    if open_clip.get_model_config(name) is None:
        raise InputError(
            f"unknown RICES encoder {name!r}; use an open_clip architecture name such as "
            f"{DEFAULT_ENCODER} (open_clip.list_models() lists them)"
        )
    if pretrained and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise InputError(
            f"unknown pretrained tag {pretrained!r} for RICES encoder {name}; known tags: {tags}"
        )


def compute_image_features(
    images: Sequence[ImageRef],
    encoder: ImageEncoder,
    batch_size: int = 64,
    *,
    progress: bool = True,
    description: str = "image features",
    loader_threads: int = 4,
) -> torch.Tensor:
    """Embed images in order; return (len(images), dim) float32 L2-normalised rows on the CPU.

    `loader_threads` threads open and preprocess the images of the next batch while the encoder
    embeds the current one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be at least 1")
    if not images:
        raise ValueError("no images to embed")
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]

    def load_image(image: ImageRef) -> torch.Tensor:
        return encoder.preprocess(image.open())

    rows = []
    bar = tqdm(total=len(images), desc=description, unit="image", disable=not progress, dynamic_ncols=True)
    image_pool = ThreadPoolExecutor(max_workers=max(1, loader_threads))
    batch_pool = ThreadPoolExecutor(max_workers=1)

    def load_batch(batch: Sequence[ImageRef]) -> torch.Tensor:
        return torch.stack(list(image_pool.map(load_image, batch)))

    try:
        pending = batch_pool.submit(load_batch, batches[0])
        for index in range(len(batches)):
            pixels = pending.result()
            if index + 1 < len(batches):
                pending = batch_pool.submit(load_batch, batches[index + 1])
            rows.append(encoder.encode(pixels))
            bar.update(len(batches[index]))
    finally:
        batch_pool.shutdown(cancel_futures=True)
        image_pool.shutdown(cancel_futures=True)
        bar.close()
    return torch.cat(rows)
