"""Render the sprite atlas of the built-in ``scenes`` dataset from the Noto Color Emoji font.

Run once by a maintainer (the output is committed); the runtime only reads the atlas, never the
font. Needs the Debian/Ubuntu package ``fonts-noto-color-emoji``::

    .venv/bin/python scripts/render_emoji_atlas.py

Writes src/crossforget/data/assets/emoji_atlas.png (one 64x64 RGBA cell per class, in class order)
and emoji_atlas.json (class -> cell, code points, font version).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from crossforget.core.io import atomic_write_bytes, atomic_write_text
from crossforget.data.scenes.vocabulary import CLASSES

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "crossforget" / "data" / "assets"
CELL = 64
# The only size at which the bitmap font renders (its strikes are 109 px).
FONT_SIZE = 109
ALPHA_THRESHOLD = 8

# Parts of a glyph that show a second object; erased so the sprite shows only its class.
# Boxes are (left, top, right, bottom) fractions of the glyph's alpha bounding box.
ERASE: dict[str, tuple[float, float, float, float]] = {
    "fork": (0.5, 0.0, 1.0, 1.0),  # the knife beside the fork
    "tennis racket": (0.0, 0.0, 0.42, 0.4),  # the shuttlecock
    "baseball bat": (0.0, 0.0, 0.3, 0.48),  # the ball
}


def alpha_bbox(image: Image.Image) -> tuple[int, int, int, int]:
    mask = image.getchannel("A").point(lambda a: 255 if a > ALPHA_THRESHOLD else 0)
    box = mask.getbbox()
    if box is None:
        raise SystemExit("a glyph rendered empty; is this the colour emoji font?")
    return box


def render_sprite(font: ImageFont.FreeTypeFont, name: str, text: str) -> Image.Image:
    """Draw one glyph, crop it to its visible pixels, pad to a square and shrink to one cell."""
    canvas = Image.new("RGBA", (2 * FONT_SIZE + 64, 2 * FONT_SIZE + 64), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((32, 32), text, font=font, embedded_color=True)
    glyph = canvas.crop(alpha_bbox(canvas))
    if name in ERASE:
        left, top, right, bottom = ERASE[name]
        w, h = glyph.size
        box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
        glyph.paste((0, 0, 0, 0), box)
        glyph = glyph.crop(alpha_bbox(glyph))
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.resize((CELL, CELL), Image.Resampling.LANCZOS)


def font_version(path: Path) -> str:
    names = TTFont(str(path), lazy=True)["name"]
    return str(names.getDebugName(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", type=Path, default=DEFAULT_FONT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if not args.font.is_file():
        raise SystemExit(f"{args.font} not found; install it with: apt-get install fonts-noto-color-emoji")
    font = ImageFont.truetype(str(args.font), FONT_SIZE)

    columns = math.ceil(math.sqrt(len(CLASSES)))
    rows = math.ceil(len(CLASSES) / columns)
    atlas = Image.new("RGBA", (columns * CELL, rows * CELL), (0, 0, 0, 0))
    entries = {}
    for cell, spec in enumerate(CLASSES):
        sprite = render_sprite(font, spec.name, spec.emoji)
        atlas.paste(sprite, ((cell % columns) * CELL, (cell // columns) * CELL))
        entries[spec.name] = {
            "cell": cell,
            "codepoints": " ".join(f"U+{ord(ch):04X}" for ch in spec.emoji),
            "erased_box": list(ERASE[spec.name]) if spec.name in ERASE else None,
        }
    meta = {
        "cell_size": CELL,
        "columns": columns,
        "font": {"file": args.font.name, "version": font_version(args.font), "render_size": FONT_SIZE},
        "classes": entries,
    }
    buffer = io.BytesIO()
    atlas.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(args.out / "emoji_atlas.png", buffer.getvalue())
    atomic_write_text(args.out / "emoji_atlas.json", json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(CLASSES)} sprites to {args.out}")


if __name__ == "__main__":
    main()
