"""The `docformer extract` command: files in, one JSON object per document out
(`DocumentExtraction.to_dict`, or an error object for a file that cannot be read)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docformer.extraction import Extractor, describe_error
from docformer.reader import DocumentReader


def parse_fields(values: Sequence[str] | None) -> list[str] | None:
    """`--fields company,date --fields total` -> ["company", "date", "total"]."""
    if not values:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or None


def error_object(source: str, code: str, message: str) -> dict[str, Any]:
    return {"source": source, "error": {"code": code, "message": message}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docformer extract",
        description="Extract key fields from documents (PDF, PNG, JPEG, TIFF); one JSON object "
        "per document on stdout. A file that cannot be read gives "
        '{"source": ..., "error": {"code": ..., "message": ...}} and exit status 1.',
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--fields", action="append", help="comma-separated fields (default: the model's)"
    )
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument(
        "--batch-documents", type=int, default=8, help="documents read and extracted together"
    )
    args = parser.parse_args(argv)

    try:
        extractor = Extractor.from_pretrained(
            args.model,
            device=args.device,
            fields=parse_fields(args.fields),
            max_batch_tokens=args.max_batch_tokens,
            max_new_tokens=args.max_new_tokens,
        )
    except (OSError, ValueError) as error:
        print(f"docformer extract: cannot load the model: {error}", file=sys.stderr)
        return 2

    indent = 2 if args.pretty else None
    failed = False
    reader = DocumentReader()

    def emit(obj: dict[str, Any]) -> None:
        print(json.dumps(obj, ensure_ascii=False, indent=indent), flush=True)

    for chunk_start in range(0, len(args.files), max(1, args.batch_documents)):
        chunk = args.files[chunk_start : chunk_start + max(1, args.batch_documents)]
        outputs: list[dict[str, Any] | None] = [None] * len(chunk)
        documents, positions = [], []
        for i, path in enumerate(chunk):
            try:
                documents.append(reader.read_path(path))
                positions.append(i)
            except Exception as error:  # noqa: BLE001 - reported per file, the rest go on
                outputs[i] = error_object(str(path), *describe_error(error))
        results = extractor.extract_each(documents)
        for i, document, result in zip(positions, documents, results, strict=True):
            if isinstance(result, BaseException):
                outputs[i] = error_object(document.source, *describe_error(result))
            else:
                outputs[i] = result.to_dict()
        for output in outputs:
            failed |= "error" in output
            emit(output)
    return 1 if failed else 0


__all__ = ["error_object", "main", "parse_fields"]
