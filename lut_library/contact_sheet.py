"""A contact sheet: one photo through every look, for people to look at."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tasks.acquire.sample_photos import load_photo
from tasks.synthesize.luts import Lut3D


def contact_sheet(luts: dict[str, Lut3D], photo: str = "astronaut", tile: int = 128,
                  columns: int = 10) -> Image.Image:
    img = cv2.resize(np.ascontiguousarray(load_photo(photo)[..., :3]), (tile, tile),
                     interpolation=cv2.INTER_AREA)
    items = [("original", img)] + [(k, v.apply(img)) for k, v in luts.items()]
    label_h, pad = 14, 4
    rows = -(-len(items) // columns)
    sheet = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + label_h + pad) + pad),
                      (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=10)
    except TypeError:
        font = ImageFont.load_default()
    for i, (name, pixels) in enumerate(items):
        x = pad + (i % columns) * (tile + pad)
        y = pad + (i // columns) * (tile + label_h + pad)
        sheet.paste(Image.fromarray(pixels), (x, y))
        draw.text((x, y + tile + 1), name[:24], fill=(20, 20, 20), font=font)
    return sheet
