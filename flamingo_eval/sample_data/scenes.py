"""Synthetic scenes: coloured shapes on a plain background, their facts, and their rendering.

A scene is a few shapes placed in the cells of a 3x3 grid, at most one shape per cell.
`random_scene` never draws two shapes with the same colour and shape, so "the red circle" names
one object, and "left" (column 0) or "right" (column 2) is never ambiguous. All randomness
comes from the `random.Random` passed in. Rendering depends only on the scene, so the same
scene always gives the same pixels.

NOTE: files are byte-identical for the same seed with the same Pillow version. JPEG encoding and
the bundled font can change between Pillow releases.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 220),
    "green": (30, 170, 50),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 180),
    "orange": (250, 130, 10),
}
SHAPES = ("circle", "square", "triangle", "diamond")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "gray": (190, 190, 190),
    "black": (20, 20, 20),
}
GRID = 3
MAX_OBJECTS = 4
IMAGE_SIZE = 64
JPEG_QUALITY = 90
POSITION_NAMES = {0: "left", 1: "middle", 2: "right"}


@dataclass(frozen=True)
class SceneObject:
    """One shape in a grid cell.

    `scale` is the shape's width as a fraction of the cell size. `dx` and `dy` shift its centre
    within the cell, also as fractions of the cell size.
    """

    colour: str
    shape: str
    row: int
    column: int
    scale: float = 0.7
    dx: float = 0.0
    dy: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A background, its shapes, and an optional word or number drawn in a white sign.

    A scene with a sign keeps the bottom grid row free for it. `brightness` below 1 darkens the
    whole image (0.0 gives a black picture whose content cannot be seen).
    """

    background: str
    objects: tuple[SceneObject, ...]
    text: str | None = None
    text_colour: str = "black"
    brightness: float = 1.0

    def with_shape(self, shape: str) -> list[SceneObject]:
        return [obj for obj in self.objects if obj.shape == shape]

    def with_colour(self, colour: str) -> list[SceneObject]:
        return [obj for obj in self.objects if obj.colour == colour]


def with_article(noun_phrase: str) -> str:
    """Prefix "a" or "an" ("an orange circle", "a red square")."""
    article = "an" if noun_phrase[0] in "aeiou" else "a"
    return f"{article} {noun_phrase}"


def derived_rng(*parts: object) -> random.Random:
    """Return a generator seeded from a stable hash of `parts` (never Python's salted `hash`)."""
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_scene(
    rng: random.Random,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
    rows: int = GRID,
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS),
) -> Scene:
    """Draw a scene of `min_objects` to `max_objects` shapes in the top `rows` grid rows.

    Shapes repeat more often than chance would make them (each new shape copies an earlier
    shape with probability 0.4), so counting questions have answers above 1.
    """
    count = rng.randint(min_objects, max_objects)
    cells = [(row, column) for row in range(rows) for column in range(GRID)]
    chosen_cells = rng.sample(cells, count)
    used: set[tuple[str, str]] = set()
    objects = []
    for row, column in chosen_cells:
        while True:
            if objects and rng.random() < 0.4:
                shape = rng.choice(objects).shape
            else:
                shape = rng.choice(SHAPES)
            colour = rng.choice(list(COLOURS))
            if (colour, shape) not in used:
                break
        used.add((colour, shape))
        objects.append(
            SceneObject(
                colour=colour,
                shape=shape,
                row=row,
                column=column,
                scale=round(rng.uniform(0.55, 0.85), 3),
                dx=round(rng.uniform(-0.08, 0.08), 3),
                dy=round(rng.uniform(-0.08, 0.08), 3),
            )
        )
    background = rng.choice(backgrounds)
    return Scene(background=background, objects=tuple(objects))


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw the scene as an RGB image of `size` x `size` pixels."""
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    cell = size / GRID
    for obj in scene.objects:
        centre_x = (obj.column + 0.5 + obj.dx) * cell
        centre_y = (obj.row + 0.5 + obj.dy) * cell
        radius = obj.scale * cell / 2
        _draw_shape(draw, obj.shape, COLOURS[obj.colour], centre_x, centre_y, radius)
    if scene.text is not None:
        _draw_sign(draw, scene.text, scene.text_colour, size)
    if scene.brightness < 1.0:
        image = Image.eval(image, lambda value: int(value * scene.brightness))
    return image


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    fill: tuple[int, int, int],
    x: float,
    y: float,
    radius: float,
) -> None:
    if shape == "circle":
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
    elif shape == "square":
        half = radius * 0.9
        draw.rectangle([x - half, y - half, x + half, y + half], fill=fill)
    elif shape == "triangle":
        corners = [(x, y - radius), (x + radius, y + radius), (x - radius, y + radius)]
        draw.polygon(corners, fill=fill)
    elif shape == "diamond":
        corners = [(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)]
        draw.polygon(corners, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_sign(draw: ImageDraw.ImageDraw, text: str, colour: str, size: int) -> None:
    """Draw `text` centred on a white sign that fills the bottom grid row."""
    top = size * 2 / GRID
    draw.rectangle([1, top + 1, size - 2, size - 2], fill=(255, 255, 255), outline=(0, 0, 0))
    font = _font(round(size / GRID * 0.6))
    left, upper, right, lower = draw.textbbox((0, 0), text, font=font)
    x = (size - (right - left)) / 2 - left
    y = top + (size / GRID - (lower - upper)) / 2 - upper
    fill = (0, 0, 0) if colour == "black" else COLOURS[colour]
    draw.text((x, y), text, fill=fill, font=font)


def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `pixels` size; Pillow without FreeType has only a fixed bitmap."""
    try:
        return ImageFont.load_default(size=pixels)
    except (TypeError, ImportError):
        return ImageFont.load_default()


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Write a baseline JPEG with fixed settings and no metadata, so equal images give equal
    bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)


def save_png(image: Image.Image, path: Path) -> None:
    """Write a PNG with no metadata chunks (Pillow adds no timestamps unless asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False)
