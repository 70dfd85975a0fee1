"""`docformer ocr FILE... [--format text|json|pdf|alto|hocr] [-o PATH]`: read documents and
print or write their words and lines.

- `text` (default): every page's text, line by line;
- `json` (or `--json`): one JSON object per file (source, sha256, media type, and for each page
  its size, whether it had a text layer, and the OCR result in the cached schema);
- `pdf`: a searchable PDF (the original pages under an invisible text layer of the OCR words,
  PDF/A-2b where it validates; a born-digital PDF as it is), `docformer.ocr.searchable_pdf`;
- `alto`: ALTO XML v4; `hocr`: hOCR (`docformer.ocr.export`).

`-o PATH` writes to a file (one input) or into a folder as `<file name>.<pdf|alto.xml|hocr>`
(several inputs); without it the output goes to stdout. Unreadable files are reported on stderr
and skipped; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from docformer.document import Document
from docformer.io import DocumentError, ReadLimits, read_document
from docformer.ocr.engine import get_engine, ocr_document

FORMATS = ("text", "json", "pdf", "alto", "hocr")
SUFFIXES = {"text": ".txt", "json": ".json", "pdf": ".pdf", "alto": ".alto.xml", "hocr": ".hocr"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docformer ocr",
        description="Read documents and print or write their OCR words and lines.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--format", choices=FORMATS, default=None, help="output format")
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument(
        "-o", "--output", type=Path, default=None,
        help="output file (one FILE) or folder (several); default stdout",
    )  # fmt: skip
    parser.add_argument("--dpi", type=int, default=200, help="PDF rendering resolution")
    parser.add_argument(
        "--threads", type=int, default=None, help="OCR threads (default: cores, at most 4)"
    )
    parser.add_argument("--max-pages", type=int, default=ReadLimits.max_pages)
    return parser


def render(document: Document, original: bytes, output_format: str) -> bytes:
    """One document in `output_format`, as bytes."""
    if output_format == "pdf":
        from docformer.ocr.searchable_pdf import searchable_pdf

        return searchable_pdf(document, original).data
    if output_format == "alto":
        from docformer.ocr.export import to_alto

        return to_alto(document)
    if output_format == "hocr":
        from docformer.ocr.export import to_hocr

        return to_hocr(document)
    if output_format == "json":
        record = {
            "source": document.source,
            "sha256": document.sha256,
            "media_type": document.media_type,
            "pages": [
                {
                    "index": page.index,
                    "width": page.width,
                    "height": page.height,
                    "has_text_layer": page.has_text_layer,
                    "ocr": page.ocr.to_dict() if page.ocr else None,
                }
                for page in document.pages
            ],
        }
        return (json.dumps(record, ensure_ascii=False) + "\n").encode()
    lines = []
    for page in document.pages:
        origin = "text layer" if page.has_text_layer else "OCR"
        rotation = f", turned {page.ocr.rotation}°" if page.ocr and page.ocr.rotation else ""
        lines.append(f"== {document.source} page {page.index + 1} ({origin}{rotation})")
        lines.append(page.ocr.text if page.ocr else "")
    return ("\n".join(lines) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output_format = args.format or ("json" if args.json else "text")
    several = len(args.files) > 1
    if several and args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
    limits = ReadLimits(max_pages=args.max_pages)
    failed = False
    for path in args.files:
        try:
            original = path.read_bytes()
            document = read_document(original, str(path), limits=limits, dpi=args.dpi)
        except (DocumentError, OSError) as error:
            print(f"docformer ocr: {error}", file=sys.stderr)
            failed = True
            continue
        if any(not page.has_text_layer for page in document.pages):
            ocr_document(document, get_engine(args.threads))
        try:
            data = render(document, original, output_format)
        except Exception as error:  # one document's writer failing must not stop the others
            print(f"docformer ocr: {path}: cannot write {output_format}: {error}", file=sys.stderr)
            failed = True
            continue
        if args.output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif several:
            (args.output / (path.name + SUFFIXES[output_format])).write_bytes(data)
        else:
            args.output.write_bytes(data)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
