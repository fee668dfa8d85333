"""Pictures and their near-identical copies, and look-alikes that are other pictures, generated.

An original is a `Scene` rendered with Pillow and numpy: a background (a gradient, or sky and ground for
the photo-like ones), a coarse noise texture, shapes (or a slide's text and blocks), light falling from
one side with the shadows it casts, and fine sensor grain. Every scene kind varies in all of these.

- `copies(picture)`: the same picture as archives and channels hold it again: resized, re-compressed
  (JPEG quality 30 to 95), converted (PNG, WebP), cropped by up to 10% of a side (each side, a
  corner, all round), stored rotated with an EXIF orientation that turns it back, with a caption band,
  a watermark or a sticker (each under 5% of the area), and chains of these as reposts make them.
- `lookalikes(scene)`: another shot of the same scene, which must not count as the same picture: objects
  moved, another noise texture, light from another side (its shadows with it).

Every file is encoded bytes; `as_indexed` decodes them as the indexer does (findimage.imaging, EXIF
orientation applied, drafted and shrunk to CLIP's 224 px). `corpus(count)` builds a set of originals with
their copies and look-alikes for tests and benchmarks/duplicates.py.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from rendered_text import font

from findimage.imaging import prepare_bytes

INDEXED_SIDE = 224  # what the indexer keeps of a picture: shrunk to CLIP's input side (bicubic)
KINDS = ("shapes", "texture", "slide", "photo")
SIZES = ((640, 480), (480, 640), (800, 450), (600, 600))
WORDS = ["Quarterly", "review", "Sommerfest", "Roadmap", "budget", "Kundenbesuch", "launch", "Messe", "team",
         "results", "Baustelle", "offsite", "design", "Jubiläum", "sales", "Workshop"]


@dataclass(frozen=True)
class Shape:
    kind: str  # "ellipse", "rectangle", "triangle"
    centre: tuple[float, float]  # in fractions of the width and height
    size: tuple[float, float]  # half-extent, in fractions of the width and height
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """What a picture shows; `render` draws it. Changing a field makes another shot of the same scene."""

    kind: str
    size: tuple[int, int]
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]  # the background's two ends
    gradient: float  # angle of the background gradient (radians)
    texture_seed: int
    texture_cells: int  # cells across the width of the coarse noise texture
    texture_colour: tuple[float, float, float]  # its amplitude per channel (grey levels)
    shapes: tuple[Shape, ...]
    light: float  # where the light comes from (radians; 0: from the left)
    light_strength: float  # brightness falls by this fraction across the picture
    grain_seed: int
    lines: tuple[str, ...] = ()  # a slide's text

    @cached_property
    def picture(self) -> Image.Image:
        return render(self)


def scene(seed: int, scale: float = 1.0) -> Scene:
    """An original: the kind and size (SIZES, times `scale`) cycle with the seed, everything else is drawn
    from it."""
    rng = np.random.default_rng(seed)
    kind, (w, h) = KINDS[seed % len(KINDS)], SIZES[(seed // len(KINDS)) % len(SIZES)]
    size = (round(w * scale), round(h * scale))

    def colour(low: int = 0, high: int = 256) -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]

    shapes = []
    for _ in range(int(rng.integers(4, 8))):
        shapes.append(Shape(str(rng.choice(["ellipse", "rectangle", "triangle"])),
                            (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85))),
                            (float(rng.uniform(0.06, 0.16)), float(rng.uniform(0.06, 0.16))), colour()))
    lines: tuple[str, ...] = ()
    if kind == "slide":
        lines = tuple(" ".join(rng.choice(WORDS, int(rng.integers(2, 5)))) for _ in range(int(rng.integers(3, 6))))
        shapes = shapes[:3]  # the slide's pictures and blocks, on the right half
        shapes = [replace(s, centre=(float(rng.uniform(0.6, 0.85)), s.centre[1])) for s in shapes]
    # A slide's light background, still dark enough that its texture is not lost in white.
    light_or_dark = (colour(140, 200), colour(100, 200)) if kind == "slide" else (colour(20, 236), colour(20, 236))
    return Scene(kind, size, light_or_dark, float(rng.uniform(0, 2 * math.pi)), int(rng.integers(1 << 30)),
                 int(rng.integers(4, 10)), tuple(float(v) for v in rng.uniform(40, 80, 3)),  # type: ignore[arg-type]
                 tuple(shapes), float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.35, 0.6)),
                 int(rng.integers(1 << 30)), lines)


def render(scene: Scene) -> Image.Image:
    w, h = scene.size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = x / w - 0.5, y / h - 0.5
    along = (math.cos(scene.gradient) * xn + math.sin(scene.gradient) * yn + 0.5)[..., None]
    start, end = (np.array(c, np.float32) for c in scene.colours)
    img = start * (1 - along) + end * along
    if scene.kind == "photo":  # sky above a wavy horizon, darker ground below
        rng = np.random.default_rng(scene.texture_seed + 1)
        horizon = h * rng.uniform(0.4, 0.65) + h * 0.05 * np.sin(x / w * rng.uniform(3, 9) + rng.uniform(0, 6))
        img = np.where((y > horizon)[..., None], img * 0.55 + rng.uniform(0, 90, 3), img)
    img = img + texture(scene) * np.array(scene.texture_colour, np.float32)
    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw_shapes(picture, scene)
    if scene.lines:
        draw_slide(picture, scene)
    img = np.asarray(picture, dtype=np.float32)
    lit = 1 + scene.light_strength * -(math.cos(scene.light) * xn + math.sin(scene.light) * yn)
    img = img * lit[..., None]
    grain = np.random.default_rng(scene.grain_seed).standard_normal((h, w, 1), dtype=np.float32)
    img += grain * (5 if scene.kind != "photo" else 8)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def texture(scene: Scene) -> np.ndarray:
    """Coarse value noise in [-1, 1], two octaves, h x w x 1."""
    w, h = scene.size
    rng = np.random.default_rng(scene.texture_seed)
    total = np.zeros((h, w), np.float32)
    for octave, weight in ((1, 1.0), (2, 0.5)):
        cells = scene.texture_cells * octave
        grid = rng.uniform(0, 255, (max(2, round(cells * h / w)), cells)).astype(np.uint8)
        total += weight * (np.asarray(Image.fromarray(grid, "L").resize((w, h), Image.Resampling.BICUBIC),
                                      np.float32) / 127.5 - 1)
    return (total / 1.5)[..., None]


def draw_shapes(picture: Image.Image, scene: Scene) -> None:
    """The shapes, each with the shadow the light casts (away from the light), softened for photos."""
    w, h = scene.size
    shadow_dx, shadow_dy = -math.cos(scene.light) * 0.03 * w, -math.sin(scene.light) * 0.03 * h
    layer = picture.copy()
    draw = ImageDraw.Draw(layer)
    for shape in scene.shapes:
        shadow = tuple(int(c * 0.35) for c in shape.colour)
        for dx, dy, colour in ((shadow_dx, shadow_dy, shadow), (0.0, 0.0, shape.colour)):
            cx, cy = shape.centre[0] * w + dx, shape.centre[1] * h + dy
            rx, ry = shape.size[0] * w, shape.size[1] * h
            box = [cx - rx, cy - ry, cx + rx, cy + ry]
            if shape.kind == "ellipse":
                draw.ellipse(box, fill=colour)
            elif shape.kind == "rectangle":
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon([(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)], fill=colour)
    if scene.kind == "photo":
        layer = layer.filter(ImageFilter.GaussianBlur(2))
    picture.paste(layer)


def draw_slide(picture: Image.Image, scene: Scene) -> None:
    w, h = scene.size
    draw = ImageDraw.Draw(picture)
    accent = tuple(255 - c for c in scene.colours[0])
    draw.rectangle([0, 0, w, int(h * 0.18)], fill=accent)
    draw.text((int(w * 0.05), int(h * 0.04)), scene.lines[0], font=font(int(h * 0.08), "bold"), fill=(255, 255, 255))
    body = font(int(h * 0.05))
    for i, line in enumerate(scene.lines[1:]):
        draw.text((int(w * 0.06), int(h * (0.28 + 0.12 * i))), line, font=body, fill=(25, 25, 25))


# ---- files ---------------------------------------------------------------------------------------
def encoded(picture: Image.Image, fmt: str = "JPEG", **args) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        args.setdefault("quality", 90)
    picture.save(out, fmt, **args)
    return out.getvalue()


def as_indexed(data: bytes, side: int = INDEXED_SIDE) -> Image.Image:
    """The picture as the indexer holds it after decoding: EXIF orientation applied, JPEGs drafted, then
    shrunk to `side` px on the short side (bicubic, as CLIP's processor)."""
    image = prepare_bytes(data, side).image
    w, h = image.size
    if min(w, h) > side:
        image = image.resize((round(w * side / min(w, h)), round(h * side / min(w, h))), Image.Resampling.BICUBIC)
    return image


def cropped(picture: Image.Image, left: float = 0, top: float = 0, right: float = 0, bottom: float = 0
            ) -> Image.Image:
    """The picture less these fractions of its width (left, right) and height (top, bottom)."""
    w, h = picture.size
    return picture.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def resized(picture: Image.Image, factor: float) -> Image.Image:
    w, h = picture.size
    return picture.resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)


def exif_rotated(picture: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation that turns them back upright."""
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(picture.transpose(stored[orientation]), "JPEG", quality=88, exif=exif)


def with_caption(picture: Image.Image, text: str = "Sommerfest 2024 - photo: Anna") -> Image.Image:
    """A dark band with a line of text across the bottom: 4.5% of the area."""
    out = picture.copy()
    w, h = out.size
    band = round(h * 0.045)
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, h - band, w, h], fill=(10, 10, 10))
    draw.text((round(w * 0.02), h - band + band // 8), text, font=font(max(8, round(band * 0.7))), fill=(240, 240, 240))
    return out


def with_watermark(picture: Image.Image, text: str = "© findimage") -> Image.Image:
    """Half-transparent white text in the bottom right corner (its box about 2% of the area)."""
    out = picture.convert("RGBA")
    w, h = out.size
    mark = Image.new("RGBA", out.size, (0, 0, 0, 0))
    face = font(max(8, round(h * 0.05)), "bold")
    box = face.getbbox(text)
    ImageDraw.Draw(mark).text((w - (box[2] - box[0]) - round(w * 0.03), round(h * 0.9)), text, font=face,
                              fill=(255, 255, 255, 140))
    return Image.alpha_composite(out, mark).convert("RGB")


def with_sticker(picture: Image.Image) -> Image.Image:
    """An opaque round sticker in the top left corner: 3% of the area."""
    out = picture.copy()
    w, h = out.size
    r = math.sqrt(0.03 * w * h / math.pi)
    ImageDraw.Draw(out).ellipse([w * 0.04, h * 0.04, w * 0.04 + 2 * r, h * 0.04 + 2 * r], fill=(230, 40, 40),
                                outline=(255, 255, 255), width=3)
    return out


def copies(picture: Image.Image) -> dict[str, bytes]:
    """The same picture as files, by what was done to it."""
    return {
        "resized 50%": encoded(resized(picture, 0.5)),
        "resized 25%": encoded(resized(picture, max(0.25, 64 / min(picture.size)))),  # 64 px at least
        "upscaled 150%": encoded(resized(picture, 1.5)),
        "jpeg q30": encoded(picture, quality=30),
        "jpeg q50": encoded(picture, quality=50),
        "jpeg q95": encoded(picture, quality=95),
        "png": encoded(picture, "PNG", compress_level=1),
        "webp": encoded(picture, "WEBP", quality=75, method=0),
        "cropped 10% left": encoded(cropped(picture, left=0.1)),
        "cropped 10% right": encoded(cropped(picture, right=0.1)),
        "cropped 10% top": encoded(cropped(picture, top=0.1)),
        "cropped 10% bottom": encoded(cropped(picture, bottom=0.1)),
        "cropped 5% left 5% right": encoded(cropped(picture, left=0.05, right=0.05)),
        "cropped 10% corner": encoded(cropped(picture, right=0.1, bottom=0.1)),
        "cropped 5% all round": encoded(cropped(picture, 0.05, 0.05, 0.05, 0.05)),
        "exif rotated 90": exif_rotated(picture, 6),
        "exif rotated 180": exif_rotated(picture, 3),
        "exif rotated 270": exif_rotated(picture, 8),
        "caption": encoded(with_caption(picture)),
        "watermark": encoded(with_watermark(picture)),
        "sticker": encoded(with_sticker(picture), "PNG", compress_level=1),
        "repost: cropped, resized, q40": encoded(resized(cropped(picture, top=0.06, left=0.04), 0.6), quality=40),
        "repost: caption, webp": encoded(resized(with_caption(picture), 0.75), "WEBP", quality=60, method=0),
    }


def lookalikes(scene: Scene, seed: int = 0) -> dict[str, Scene]:
    """Other shots of the same scene: what changed, and the scene as then."""
    rng = np.random.default_rng(seed + scene.texture_seed)
    moved = list(scene.shapes)
    for i in range(max(0, len(moved) - 3), len(moved)):  # the last drawn: on top of the others where they land
        shape = moved[i]
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.3)
        dx, dy = distance * math.cos(angle), distance * math.sin(angle)
        x, y = shape.centre
        # away from the edge it would leave: the object moves the whole distance, still in the picture
        moved[i] = replace(shape, centre=(x + dx if 0.1 <= x + dx <= 0.9 else x - dx,
                                          y + dy if 0.1 <= y + dy <= 0.9 else y - dy))
    return {
        "objects moved": replace(scene, shapes=tuple(moved), grain_seed=scene.grain_seed + 1),
        "other noise": replace(scene, texture_seed=scene.texture_seed + 1, grain_seed=scene.grain_seed + 2),
        "light from the other side": replace(scene, light=scene.light + math.pi * float(rng.uniform(0.75, 1.25)),
                                             grain_seed=scene.grain_seed + 3),
    }


@dataclass
class Case:
    """An original with its copies and its look-alikes, as encoded files."""

    name: str
    original: bytes
    copies: dict[str, bytes]
    lookalikes: dict[str, bytes]


def case(seed: int, scale: float = 1.0) -> Case:
    original = scene(seed, scale)
    return Case(f"{original.kind} {seed}", encoded(original.picture), copies(original.picture),
                {what: encoded(other.picture) for what, other in lookalikes(original, seed).items()})


def corpus(count: int, first_seed: int = 0, scale: float = 1.0) -> list[Case]:
    """`count` originals (of every kind in turn) with their copies and look-alikes."""
    return [case(seed, scale) for seed in range(first_seed, first_seed + count)]


# Where a copy's bytes go in an archive: its format's extension (the rest are JPEGs).
_EXTENSIONS = {b"\x89PNG": ".png", b"RIFF": ".webp"}


def write_archive(root, count: int = 2, scale: float = 0.5, leave_out: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """`count` originals under photos/<n>/, every copy of each (but those named in `leave_out`) under
    copies/<n>/, and its look-alikes under lookalikes/<n>/, as files in the archive folder `root`. Returns
    each original's group as the duplicates report should find it (its path and its copies'), by the
    original's path; the look-alikes belong to none."""
    groups: dict[str, list[str]] = {}
    for number, found in enumerate(corpus(count, scale=scale)):
        original = f"photos/{number}/original.jpg"
        files = {original: found.original}
        members = [original]
        for what, data in found.copies.items():
            if what in leave_out:
                continue
            name = "".join(c if c.isalnum() else "-" for c in what)
            path = f"copies/{number}/{name}{_EXTENSIONS.get(data[:4], '.jpg')}"
            files[path] = data
            members.append(path)
        for what, data in found.lookalikes.items():
            files[f"lookalikes/{number}/{what.replace(' ', '-')}.jpg"] = data
        for path, data in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        groups[original] = sorted(members)
    return groups
