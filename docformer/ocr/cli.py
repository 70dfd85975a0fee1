"""`docformer ocr FILE... [--json]`: read documents and print their words and lines.

Plain output is the text of every page, line by line; `--json` prints one JSON object per file
(source, sha256, media type, and for each page its size, whether it had a text layer, and the
OCR result in the cached schema). Unreadable files are reported on stderr and skipped; the exit
status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from docformer.io import DocumentError, ReadLimits, read_document
from docformer.ocr.engine import get_engine, ocr_document


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docformer ocr", description="Read documents and print their OCR words and lines."
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--dpi", type=int, default=200, help="PDF rendering resolution")
    parser.add_argument(
        "--threads", type=int, default=None, help="OCR threads (default: cores, at most 4)"
    )
    parser.add_argument("--max-pages", type=int, default=ReadLimits.max_pages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits = ReadLimits(max_pages=args.max_pages)
    failed = False
    for path in args.files:
        try:
            doc = read_document(path.read_bytes(), str(path), limits=limits, dpi=args.dpi)
        except (DocumentError, OSError) as error:
            print(f"docformer ocr: {error}", file=sys.stderr)
            failed = True
            continue
        if any(not page.has_text_layer for page in doc.pages):
            ocr_document(doc, get_engine(args.threads))
        if args.json:
            record = {
                "source": doc.source,
                "sha256": doc.sha256,
                "media_type": doc.media_type,
                "pages": [
                    {
                        "index": page.index,
                        "width": page.width,
                        "height": page.height,
                        "has_text_layer": page.has_text_layer,
                        "ocr": page.ocr.to_dict() if page.ocr else None,
                    }
                    for page in doc.pages
                ],
            }
            print(json.dumps(record, ensure_ascii=False))
        else:
            for page in doc.pages:
                origin = "text layer" if page.has_text_layer else "OCR"
                rotation = (
                    f", turned {page.ocr.rotation}°" if page.ocr and page.ocr.rotation else ""
                )
                print(f"== {doc.source} page {page.index + 1} ({origin}{rotation})")
                print(page.ocr.text if page.ocr else "")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
