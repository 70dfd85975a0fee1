"""OCR benchmark: speed and word accuracy of `docformer.ocr` on real documents.

    python -m bench.ocr --sroie ../shared/data/sroie-train --invoices ../shared/data/invoice2data \
        --n 50 --runs 3

- Scanned receipts (SROIE): seconds per page and bag-of-words accuracy against the dataset's
  own line transcriptions (`<id>.lines.csv`), for our engine and for bare PaddleOCR (the same
  pipeline object, called directly, no word boxes, no orientation check, no reading order),
  timed alternately on the same decoded images in the same run; the ratio is our overhead.
- Born-digital invoices: seconds per page of `read_document` (render + text layer) and how many
  of pdfium's own plain-text words the text-layer words keep; then the same pages through OCR,
  for what skipping OCR saves and what OCR would have read.

Figures are the median over runs with the min–max range. SROIE transcriptions are upper case,
so words are compared case-insensitively. A data path that does not exist is skipped.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def bag(words) -> collections.Counter:
    return collections.Counter(w.casefold() for w in words)


def bag_scores(truth: collections.Counter, read: collections.Counter) -> tuple[int, int, int]:
    """(matched, truth total, read total) of two bags of words."""
    return sum((truth & read).values()), sum(truth.values()), sum(read.values())


def sroie_truth(image_path: Path) -> collections.Counter:
    words = []
    with image_path.with_suffix(".lines.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if len(row) >= 9:
                words += ",".join(row[8:]).split()
    return bag(words)


def summary(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def bench_sroie(engine, folder: Path, n: int, runs: int) -> None:
    paths = sorted(folder.glob("*.jpg"))[:n]
    if not paths:
        print(f"no receipts in {folder}; skipped")
        return
    images = [Image.open(p).convert("RGB") for p in paths]
    bgr = [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in images]
    truths = [sroie_truth(p) for p in paths]
    pixels = statistics.median(im.width * im.height for im in images) / 1e6
    print(f"\n## SROIE receipts: {len(paths)} images (median {pixels:.1f} Mpx), {runs} runs")

    ours_s, bare_s, ratios = [], [], []
    ours_acc = bare_acc = None
    rotations = collections.Counter()
    for run in range(runs):
        ours_t = bare_t = 0.0
        ours_m = bare_m = [0, 0, 0]
        for i, (image, array, truth) in enumerate(zip(images, bgr, truths, strict=True)):
            # Alternate which goes first so neither always gets the warmer caches.
            for which in ("ours", "bare") if (i + run) % 2 == 0 else ("bare", "ours"):
                start = time.perf_counter()
                if which == "ours":
                    result = engine.read_page(image)
                    ours_t += time.perf_counter() - start
                    words = [w.text for w in result.words]
                    ours_m = [
                        a + b for a, b in zip(ours_m, bag_scores(truth, bag(words)), strict=True)
                    ]
                    if run == 0:
                        rotations[result.rotation] += 1
                else:
                    raw = engine.pipeline.predict(array)[0]
                    bare_t += time.perf_counter() - start
                    words = [w for line in raw["rec_texts"] for w in line.split()]
                    bare_m = [
                        a + b for a, b in zip(bare_m, bag_scores(truth, bag(words)), strict=True)
                    ]
        ours_s.append(ours_t / len(images))
        bare_s.append(bare_t / len(images))
        ratios.append(ours_t / bare_t)
        ours_acc, bare_acc = ours_m, bare_m
        print(
            f"run {run + 1}: ours {ours_s[-1]:.3f} s/page, bare {bare_s[-1]:.3f} s/page", flush=True
        )

    for name, seconds, (matched, total, read) in (
        ("docformer.ocr", ours_s, ours_acc),
        ("bare PaddleOCR", bare_s, bare_acc),
    ):
        print(
            f"{name:15s} s/page {summary(seconds)}  word recall {matched / total:.4f}  "
            f"word precision {matched / read:.4f}  ({matched}/{total} truth words)"
        )
    print(f"overhead ratio ours/bare: {summary(ratios)}")
    print(f"page rotations applied: {dict(rotations)}")


def bench_invoices(engine, folder: Path, runs: int) -> None:
    import pypdfium2 as pdfium

    from docformer.io import read_document

    paths = sorted(folder.glob("*.pdf"))
    if not paths:
        print(f"no PDFs in {folder}; skipped")
        return
    blobs = [p.read_bytes() for p in paths]
    pages_total = sum(len(pdfium.PdfDocument(b)) for b in blobs)
    print(f"\n## Born-digital invoices: {len(paths)} PDFs, {pages_total} pages, {runs} runs")

    read_s = []
    docs = []
    for _ in range(runs):
        start = time.perf_counter()
        docs = [read_document(b, str(p)) for b, p in zip(blobs, paths, strict=True)]
        read_s.append((time.perf_counter() - start) / pages_total)

    matched = total = read = 0
    text_pages = 0
    for blob, doc in zip(blobs, docs, strict=True):
        pdf = pdfium.PdfDocument(blob)
        for index, page in enumerate(doc.pages):
            text_pages += page.has_text_layer
            pdf_page = pdf[index]
            truth = bag(pdf_page.get_textpage().get_text_range().split())
            ours = bag(w.text for w in page.ocr.words) if page.ocr else collections.Counter()
            m, t, r = bag_scores(truth, ours)
            matched, total, read = matched + m, total + t, read + r
    print(f"read_document (render 200 dpi + text layer) s/page {summary(read_s)}")
    print(f"pages with a text layer: {text_pages}/{pages_total}")
    print(
        f"text-layer words vs pdfium plain text: recall {matched / total:.4f}, "
        f"precision {matched / read:.4f} ({matched}/{total})"
    )

    # What OCR would have cost and read on the same rendered pages.
    ocr_t, m_sum, t_sum = 0.0, 0, 0
    for doc in docs:
        for page in doc.pages:
            start = time.perf_counter()
            result = engine.read_page(page.image)
            ocr_t += time.perf_counter() - start
            truth = bag(w.text for w in page.ocr.words) if page.ocr else collections.Counter()
            m, t, _ = bag_scores(truth, bag(w.text for w in result.words))
            m_sum, t_sum = m_sum + m, t_sum + t
    print(
        f"same pages through OCR instead (1 run): {ocr_t / pages_total:.3f} s/page, "
        f"word recall vs text layer {m_sum / max(t_sum, 1):.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sroie", type=Path, default=Path("../shared/data/sroie-train"))
    parser.add_argument("--invoices", type=Path, default=Path("../shared/data/invoice2data"))
    parser.add_argument("--n", type=int, default=50, help="receipts to read")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="OCR threads")
    args = parser.parse_args(argv)

    present = [p for p in (args.sroie, args.invoices) if p.is_dir()]
    if not present:
        print(f"benchmark data not found ({args.sroie}, {args.invoices}); nothing to do")
        return 0

    from docformer.ocr import get_engine

    start = time.perf_counter()
    engine = get_engine(args.threads)
    engine.read_page(Image.new("RGB", (200, 100), "white"))  # load sessions before timing
    print(f"engine: {engine.engine_id}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {args.threads} OCR threads; "
        f"{datetime.date.today().isoformat()}; engine start {time.perf_counter() - start:.1f} s"
    )
    if args.sroie.is_dir():
        bench_sroie(engine, args.sroie, args.n, args.runs)
    else:
        print(f"\n{args.sroie} not found; receipts skipped")
    if args.invoices.is_dir():
        bench_invoices(engine, args.invoices, args.runs)
    else:
        print(f"\n{args.invoices} not found; invoices skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
