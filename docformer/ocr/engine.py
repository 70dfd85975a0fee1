"""The OCR engine: PaddleOCR 3.x (PP-OCRv6 small, ONNX Runtime), offline, one per process.

`read_page` turns one page image into an `OCRResult`: whole-page rotation fixed, words with
boxes in page pixels, lines numbered in reading order. `engine_id` names everything that can
change the result, so it can key a cache of OCR results.
"""

from __future__ import annotations

import os
import threading
from importlib.metadata import version

import numpy as np
from PIL import Image

from docformer.document import Document, OCRResult
from docformer.ocr.layout import assign_lines
from docformer.ocr.models import (
    DETECTION_MODEL,
    RECOGNITION_MODEL,
    WEIGHTS_PACKAGE,
    configure_paddle_environment,
    prepare_model_dirs,
)
from docformer.ocr.orientation import choose_rotation
from docformer.ocr.words import RecognisedLine, line_to_segment

# Bump when the way words, boxes or lines are derived from PaddleOCR's output changes.
WORDS_VERSION = 1
UNCLIP_RATIO = 2.0


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class OCREngine:
    """PaddleOCR's text detection + recognition pipeline, used under a lock.

    PaddleX predictors are not safe to call from several threads at once; callers that want
    parallel OCR run several processes (each with its own engine and a few threads).
    """

    def __init__(self, threads: int | None = None) -> None:
        configure_paddle_environment()
        from paddleocr import PaddleOCR  # heavy: imported only when an engine is built

        self.threads = threads or default_threads()
        self._model_dirs = prepare_model_dirs()
        # Everything without local weights is off: document orientation and unwarping, and the
        # text-line orientation classifier (it flips long lines; see orientation.py instead).
        self.pipeline_options = dict(
            text_detection_model_name=DETECTION_MODEL,
            text_detection_model_dir=str(self._model_dirs[DETECTION_MODEL]),
            text_recognition_model_name=RECOGNITION_MODEL,
            text_recognition_model_dir=str(self._model_dirs[RECOGNITION_MODEL]),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            # Roomier regions than the default 1.5: with tight crops the recogniser drops the
            # space between words in some lines ("1034.327365.60"); see BENCHMARKS.md.
            text_det_unclip_ratio=UNCLIP_RATIO,
            device="cpu",
            engine="onnxruntime",
            engine_config=self.engine_config,
        )
        self.pipeline = PaddleOCR(**self.pipeline_options)
        self._recogniser = None  # built on the first page that needs an orientation check
        self._lock = threading.Lock()
        self.engine_id = (
            f"paddleocr-{version('paddleocr')}/{DETECTION_MODEL}+{RECOGNITION_MODEL}"
            f"/{WEIGHTS_PACKAGE}-{version(WEIGHTS_PACKAGE)}/onnxruntime-{version('onnxruntime')}"
            f"/unclip-{UNCLIP_RATIO}/words-v{WORDS_VERSION}"
        )

    @property
    def engine_config(self) -> dict[str, int]:
        # Threads inside one operator; operators run one after another.
        return {"intra_op_num_threads": self.threads, "inter_op_num_threads": 1}

    def read_page(self, image: Image.Image) -> OCRResult:
        """Words of one page. A page lying on its side or upside down is turned first; the
        result's `rotation` says by how much, and its boxes refer to the turned page."""
        rgb = np.asarray(image.convert("RGB"))
        with self._lock:
            lines = self._recognise_page(rgb)
            rotation = choose_rotation(lines, rgb, self._recognise_crops)
            if rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
                lines = self._recognise_page(rgb)
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        words = assign_lines([line_to_segment(line, grey) for line in lines])
        height, width = rgb.shape[:2]
        return OCRResult(width, height, words, self.engine_id, rotation=rotation)

    def _recognise_page(self, rgb: np.ndarray) -> list[RecognisedLine]:
        # PaddleX takes arrays in OpenCV's BGR order.
        result = self.pipeline.predict(np.ascontiguousarray(rgb[:, :, ::-1]), return_word_box=True)[
            0
        ]
        runs = result.get("text_word") or [None] * len(result["rec_texts"])
        run_boxes = result.get("text_word_boxes") or [None] * len(result["rec_texts"])
        return [
            RecognisedLine(
                text=text,
                score=float(score),
                quad=np.asarray(poly, dtype=np.float64).reshape(-1, 2)[:4],
                runs=list(line_runs) if line_runs is not None else None,
                run_boxes=np.asarray(boxes, dtype=np.float64) if boxes is not None else None,
            )
            for text, score, poly, line_runs, boxes in zip(
                result["rec_texts"],
                result["rec_scores"],
                result["rec_polys"],
                runs,
                run_boxes,
                strict=True,
            )
            if text.strip()
        ]

    def _recognise_crops(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        if self._recogniser is None:
            from paddleocr import TextRecognition

            self._recogniser = TextRecognition(
                model_name=RECOGNITION_MODEL,
                model_dir=str(self._model_dirs[RECOGNITION_MODEL]),
                device="cpu",
                engine="onnxruntime",
                engine_config=self.engine_config,
            )
        bgr = [np.ascontiguousarray(crop[:, :, ::-1]) for crop in crops]
        return [(r["rec_text"], float(r["rec_score"])) for r in self._recogniser.predict(bgr)]


_engine: OCREngine | None = None
_engine_lock = threading.Lock()


def get_engine(threads: int | None = None) -> OCREngine:
    """The process-wide engine, built on first use (the first caller's `threads` decides)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = OCREngine(threads)
        return _engine


def ocr_document(doc: Document, engine: OCREngine | None = None) -> Document:
    """Fill `page.ocr` for every page that has an image, no text layer and no OCR result yet
    (in place; a result restored from a cache is kept).

    A page OCR found turned is replaced by its upright image, so image, size and word boxes
    agree."""
    for page in doc.pages:
        if page.has_text_layer or page.image is None or page.ocr is not None:
            continue
        engine = engine or get_engine()
        result = engine.read_page(page.image)
        if result.rotation:
            page.image = page.image.rotate(result.rotation, expand=True)
            page.width, page.height = page.image.size
        page.ocr = result
    return doc
