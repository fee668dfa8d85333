"""Pictures with known text in them, rendered with Pillow and the DejaVu fonts: screenshots, slides,
street signs in photos, and photos without any text. Each comes with the lines it shows, so tests and
benchmarks can check what a reader recognises against what was drawn.

The DejaVu fonts come from Debian's `fonts-dejavu-core` (`apt-get install fonts-dejavu-core`);
FINDIMAGE_FONT_DIR points elsewhere.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = [os.environ.get("FINDIMAGE_FONT_DIR", ""), "/usr/share/fonts/truetype/dejavu",
             "/usr/share/fonts/dejavu", "/usr/local/share/fonts"]
FONT_FILES = {"sans": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf",
              "serif": "DejaVuSerif.ttf"}

ERROR_DIALOG = "ERROR: disk quota exceeded on volume /srv/data"
GERMAN_SLIDE = "Umsatzprognose 2025 — Größenordnung und Überblick"
STREET_SIGN = "Schillerplatz"


@dataclass(frozen=True)
class Rendered:
    """A picture and the lines of text drawn on it, in reading order (empty for a photo without text);
    for a sign, where its plate is (left, top, right, bottom in pixels)."""

    kind: str  # "screenshot", "slide", "sign", "page" or "photo"
    image: Image.Image
    lines: tuple[str, ...]
    where: tuple[int, int, int, int] | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@cache
def font(size: int, style: str = "sans") -> ImageFont.FreeTypeFont:
    for folder in filter(None, FONT_DIRS):
        path = Path(folder) / FONT_FILES[style]
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    # No DejaVu here (CI installs Debian's fonts-dejavu-core): Pillow's own scalable font, which has
    # the umlauts and ß too.
    fallback = ImageFont.load_default(size)
    assert isinstance(fallback, ImageFont.FreeTypeFont), "Pillow without FreeType cannot render the test pictures"
    return fallback


# ---- backgrounds -------------------------------------------------------------------------------
def photo_background(size: tuple[int, int], seed: int, noise: float = 4.0) -> Image.Image:
    """A photo-like scene without text: sky gradient, a wavy horizon, soft blobs, sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    sw, sh = max(8, w // 8), max(8, h // 8)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(20, 190, 3)
    t = (y / sh)[..., None]
    img = top * (1 - t) + bottom * t
    horizon = sh * rng.uniform(0.4, 0.7) + sh * 0.06 * np.sin(x / sw * rng.uniform(2, 8) + rng.uniform(0, 6))
    img = np.where((y > horizon)[..., None], img * 0.6 + rng.uniform(0, 110, 3), img)
    for _ in range(int(rng.integers(5, 11))):
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        rx, ry = rng.uniform(0.03, 0.22) * sw, rng.uniform(0.03, 0.22) * sh
        alpha = np.clip(1.5 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0, 1)[..., None]
        img = img * (1 - alpha) + rng.uniform(0, 255, 3) * alpha
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    base = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    base += rng.normal(0, noise, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def as_jpeg(image: Image.Image, quality: int) -> Image.Image:
    """The picture after a round trip through JPEG at `quality` (its artefacts included)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    out.seek(0)
    decoded = Image.open(out)
    decoded.load()
    return decoded.convert("RGB")


# ---- screenshots and slides --------------------------------------------------------------------
def screenshot(title: str, body: list[str], seed: int = 0, size: tuple[int, int] = (1280, 800),
               buttons: tuple[str, ...] = ("OK", "Cancel"), mono: bool = False,
               font_size: int | None = None) -> Rendered:
    """A desktop screenshot: a flat wallpaper, a window with a title bar, lines of text (`font_size` px,
    or 16-20) and buttons."""
    rng = np.random.default_rng(seed)
    w, h = size
    wallpaper = tuple(int(v) for v in rng.integers(30, 110, 3))
    image = Image.new("RGB", size, wallpaper)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, w, 28], fill=(235, 235, 235))  # the desktop's top bar, no text in it
    size_px = int(rng.integers(16, 21))
    body_font = font(font_size or size_px, "mono" if mono else "sans")
    title_font = font(18, "bold")
    line_h = int(body_font.size * 1.7)
    width = max([draw.textlength(line, font=body_font) for line in body] + [draw.textlength(title, font=title_font)])
    win_w, win_h = int(width) + 120, 70 + line_h * len(body) + (70 if buttons else 20)
    x0 = int(rng.integers(40, max(41, w - win_w - 40)))
    y0 = int(rng.integers(60, max(61, h - win_h - 40)))
    draw.rectangle([x0 + 6, y0 + 6, x0 + win_w + 6, y0 + win_h + 6], fill=tuple(max(0, c - 25) for c in wallpaper))
    draw.rectangle([x0, y0, x0 + win_w, y0 + win_h], fill=(250, 250, 250), outline=(160, 160, 160))
    draw.rectangle([x0, y0, x0 + win_w, y0 + 36], fill=(60, 90, 150))
    draw.text((x0 + 16, y0 + 8), title, font=title_font, fill=(255, 255, 255))
    y = y0 + 56
    for line in body:
        draw.text((x0 + 60, y), line, font=body_font, fill=(20, 20, 20))
        y += line_h
    bx = x0 + win_w - 20
    for label in reversed(buttons):
        bw = int(draw.textlength(label, font=body_font)) + 40
        bx -= bw
        draw.rounded_rectangle([bx, y + 14, bx + bw, y + 50], 6, fill=(225, 228, 235), outline=(120, 120, 140))
        draw.text((bx + 20, y + 22), label, font=body_font, fill=(20, 20, 20))
        bx -= 16
    return Rendered("screenshot", image, (title, *body, *buttons))


def error_dialog() -> Rendered:
    return screenshot("Backup", [ERROR_DIALOG, "Free some space or ask for a larger quota."], seed=1)


def slide(title: str, bullets: list[str], seed: int = 0, size: tuple[int, int] = (1920, 1080)) -> Rendered:
    """A presentation slide: a coloured band with the title, bullet points below."""
    rng = np.random.default_rng(seed)
    w, h = size
    accent = tuple(int(v) for v in rng.integers(20, 140, 3))
    image = Image.new("RGB", size, (252, 252, 248))
    draw = ImageDraw.Draw(image)
    title_size = int(w / 30)
    while title_size > 12 and font(title_size, "bold").getlength(title) > w * 0.9:  # the title fits the band
        title_size -= 2
    title_font, body_font = font(title_size, "bold"), font(int(w / 44), "serif" if seed % 2 else "sans")
    draw.rectangle([0, 0, w, int(h * 0.2)], fill=accent)
    draw.text((int(w * 0.05), int(h * 0.06)), title, font=title_font, fill=(255, 255, 255))
    y = int(h * 0.3)
    for line in bullets:
        draw.ellipse([int(w * 0.06), y + body_font.size // 3, int(w * 0.06) + body_font.size // 2,
                      y + body_font.size // 3 + body_font.size // 2], fill=accent)
        draw.text((int(w * 0.09), y), line, font=body_font, fill=(30, 30, 30))
        y += int(body_font.size * 1.8)
    return Rendered("slide", image, (title, *bullets))


def german_slide() -> Rendered:
    return slide(GERMAN_SLIDE, ["Märkte in Österreich und der Schweiz", "Stückzahlen steigen um 12 Prozent",
                                "Maßnahmen für das zweite Halbjahr"], seed=2)


# ---- signs in photos ---------------------------------------------------------------------------
def sign_photo(text: str, size: tuple[int, int] = (1600, 1200), seed: int = 0, text_height: int = 90,
               angle: float = 0.0, quality: int = 85, at: tuple[float, float] = (0.3, 0.35),
               colours: tuple[tuple[int, int, int], tuple[int, int, int]] = ((250, 250, 250), (20, 20, 20))
               ) -> Rendered:
    """A photo with a street sign (a plate with a border and one word or line), turned by `angle`
    degrees, with sensor noise and JPEG artefacts. `text_height` is the size of the letters in pixels."""
    image = photo_background(size, seed)
    plate_colour, ink = colours
    face = font(text_height, "bold")
    left, top, right, bottom = face.getbbox(text)
    pad = text_height // 3
    plate = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), plate_colour)
    draw = ImageDraw.Draw(plate)
    border = max(2, text_height // 14)
    draw.rectangle([border, border, plate.width - 1 - border, plate.height - 1 - border], outline=ink, width=border)
    draw.text((pad - left, pad - top), text, font=face, fill=ink)
    mask = Image.new("L", plate.size, 255)
    if angle:
        plate = plate.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    x, y = int(size[0] * at[0]), int(size[1] * at[1])
    post = max(4, text_height // 6)
    ImageDraw.Draw(image).rectangle([x + plate.width // 2 - post // 2, y + plate.height // 2,
                                     x + plate.width // 2 + post // 2, size[1]], fill=(90, 90, 95))
    image.paste(plate, (x, y), mask.filter(ImageFilter.GaussianBlur(0.6)))
    noisy = np.asarray(image, dtype=np.float32)
    noisy += np.random.default_rng(seed + 1).normal(0, 7, noisy.shape[:2] + (1,)).astype(np.float32)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return Rendered("sign", as_jpeg(image, quality), (text,), (x, y, x + plate.width, y + plate.height))


def street_sign() -> Rendered:
    """The rotated, noisy JPEG of a street sign."""
    return sign_photo(STREET_SIGN, seed=3, angle=9, quality=60, colours=((30, 70, 160), (245, 245, 245)))


def large_photo_with_small_sign() -> Rendered:
    """A 12-MP phone-sized photo (4032x3024) with a small sign: letters 60 px high, 2% of the height."""
    return sign_photo("Bahnhofstraße 12", size=(4032, 3024), seed=4, text_height=60, angle=-4, quality=90,
                      at=(0.62, 0.4))


PAGE = ["Protokoll der Sitzung vom 14. März", "Anwesend: Frau Weiß, Herr Müller", "Beschluss: Budget wird erhöht",
        "Nächster Termin im Büro Köln", "Offene Punkte bleiben vertagt"]


def page_photo(size: tuple[int, int] = (4032, 3024), text_height: int = 40, seed: int = 11,
               lines: list[str] = PAGE) -> Rendered:
    """A photo of a printed page: a sheet of paper with a few lines of `text_height` px letters."""
    image = photo_background(size, seed)
    draw = ImageDraw.Draw(image)
    face = font(text_height)
    x, y = size[0] // 4, size[1] // 4
    draw.rectangle([x - 40, y - 40, x + 20 * text_height, y + len(lines) * text_height * 2], fill=(240, 238, 230))
    for i, line in enumerate(lines):
        draw.text((x, y + i * int(text_height * 1.6)), line, font=face, fill=(30, 30, 30))
    return Rendered("page", as_jpeg(image, 85), tuple(lines))


def photo_without_text(seed: int = 5, size: tuple[int, int] = (1600, 1200)) -> Rendered:
    return Rendered("photo", as_jpeg(photo_background(size, seed), 88), ())


# ---- a mixed set for benchmarks ----------------------------------------------------------------
SCREENS = [  # title, body, monospaced, size
    ("Terminal", ["$ rsync -av photos/ /srv/archive/2024", "sending incremental file list",
                  "rsync: write failed on volume: No space left on device"], True, (1280, 800)),
    ("Einstellungen", ["Benutzerkonto löschen", "Änderungen werden sofort übernommen", "Größe des Speichers: 512 GB"],
     False, (1280, 800)),
    ("Build failed", ["Pipeline 4711 failed at stage deploy", "Timeout while waiting for database migration",
                      "Retry or contact the platform team"], False, (1440, 900)),
    ("Calendar", ["Quarterly review moved to Thursday", "Room Bergblick, third floor", "Bring the sales figures"],
     False, (1280, 800)),
    ("Dateien", ["Angebot Müller GmbH final.pdf", "Präsentation Kundenbeirat.pptx", "Reisekosten Juli.xlsx"],
     False, (1920, 1080)),
    ("Release notes", ["Search now reads text in images", "Faster indexing of large folders",
                       "Fixed: links to moved files"], False, (2560, 1440)),
]
SLIDES = [
    ("Roadmap 2026", ["Faster search for every team", "Text in images becomes searchable", "Fewer clicks in Slack"]),
    ("Qualitätsziele", ["Fehlerquote unter zwei Prozent", "Schnellere Prüfung der Lieferungen",
                        "Schulungen für neue Kolleginnen"]),
    ("Customer feedback", ["Onboarding takes too long", "Pricing page is confusing", "Support answers quickly"]),
]
SIGNS = [("Hauptbahnhof", 0.0, 110), ("Königstraße", 6.0, 80), ("Parkhaus Nord", -5.0, 70), ("Ausfahrt", 3.0, 100)]


def mixed_set() -> list[Rendered]:
    """Pictures of each kind: 4 photos without text and 4 with a sign (half of each 12 MP, half
    1600x1200), 6 screenshots (1280x800 to 2560x1440), 3 slides (1920x1080), and 4 photos of a printed
    page (letters 1% and 1.5% of the long side)."""
    pictures = [photo_without_text(100 + i, (4032, 3024) if i % 2 == 0 else (1600, 1200)) for i in range(4)]
    for i, (text, angle, height) in enumerate(SIGNS):
        size = (4032, 3024) if i % 2 == 0 else (1600, 1200)
        pictures.append(sign_photo(text, size=size, seed=200 + i, text_height=height * (2 if i % 2 == 0 else 1),
                                   angle=angle, quality=80, at=(0.2 + 0.15 * i, 0.3)))
    pictures += [screenshot(t, body, seed=300 + i, mono=mono, size=size)
                 for i, (t, body, mono, size) in enumerate(SCREENS)]
    pictures += [slide(t, body, seed=400 + i) for i, (t, body) in enumerate(SLIDES)]
    pictures += [page_photo(size, height, seed=500 + i)
                 for i, (size, height) in enumerate([((4032, 3024), 40), ((4032, 3024), 60), ((1600, 1200), 16),
                                                     ((1600, 1200), 24)])]
    return pictures
