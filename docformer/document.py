"""The one document model every stage speaks (in the spirit of docTR's Document → Page → Word).

Boxes are kept in page pixels (x0, y0, x1, y1) everywhere; they are normalised to the model's
0–1000 buckets once, by the DocFormerv2 processor, and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

Box = tuple[float, float, float, float]

OCR_SCHEMA_VERSION = 1


@dataclass
class Word:
    text: str
    box: Box
    confidence: float = 1.0
    line_id: int = 0  # index of the word's line on its page, lines numbered in reading order


@dataclass
class OCRResult:
    """Words of one page, in reading order, with the engine that produced them.

    `engine` identifies engine, model names and version (e.g. "paddleocr-3.7.0/PP-OCRv6_small");
    together with the page's sha256 and index it is the OCR cache key.
    """

    width: int
    height: int
    words: list[Word] = field(default_factory=list)
    engine: str = ""
    schema_version: int = OCR_SCHEMA_VERSION
    # Degrees counter-clockwise (as in PIL's Image.rotate) the page image was turned before OCR
    # because it lay on its side or upside down; width, height and boxes refer to the turned page.
    rotation: int = 0

    @property
    def text(self) -> str:
        return "\n".join(" ".join(w.text for w in line) for line in self.lines())

    def lines(self) -> list[list[Word]]:
        by_line: dict[int, list[Word]] = {}
        for word in self.words:
            by_line.setdefault(word.line_id, []).append(word)
        return [by_line[k] for k in sorted(by_line)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OCRResult:
        version = data.get("schema_version", OCR_SCHEMA_VERSION)
        if version != OCR_SCHEMA_VERSION:
            raise ValueError(
                f"unsupported OCR schema version {version} (expected {OCR_SCHEMA_VERSION})"
            )
        words = [
            Word(
                w["text"],
                tuple(float(v) for v in w["box"]),
                float(w.get("confidence", 1.0)),
                int(w.get("line_id", 0)),
            )
            for w in data["words"]
        ]
        return cls(
            int(data["width"]),
            int(data["height"]),
            words,
            data.get("engine", ""),
            version,
            rotation=int(data.get("rotation", 0)),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> OCRResult:
        return cls.from_dict(json.loads(text))


@dataclass
class Page:
    index: int
    width: int  # pixel size of the full page as read: the frame of its OCR's boxes
    height: int
    # RGB rendering, at full size or shrunk (`DocumentReader.read(keep_image_size=...)`);
    # None when only the OCR result is kept
    image: Image.Image | None = None
    ocr: OCRResult | None = None
    has_text_layer: bool = False  # born-digital PDF page: words came from the text layer


def attach_ocr(page: Page, ocr: OCRResult) -> None:
    """Give `page` its OCR, turning the image the way the OCR saw it (`ocr.rotation` degrees
    counter-clockwise) so the image, the page size and the word boxes agree."""
    if ocr.rotation % 360 and page.image is not None:
        page.image = page.image.rotate(ocr.rotation, expand=True)
    if page.image is not None:
        page.width, page.height = page.image.size
    else:
        page.width, page.height = ocr.width, ocr.height
    page.ocr = ocr


@dataclass
class Document:
    source: str  # bucket/key or a path
    sha256: str
    media_type: str  # e.g. "application/pdf", "image/tiff"
    pages: list[Page] = field(default_factory=list)
