"""`docflow labels import | list | export`: ground-truth labels in and out of the database, in
the labelled-folder format."""

from __future__ import annotations

import argparse
import sys

from flows.cli.common import load_settings, open_session, print_rows, progress_bar


def cmd_labels_import(args: argparse.Namespace) -> int:
    """labels import DIR: upload a labelled folder's documents to the inbox, register them and
    store their labels (source `--source`); OCR given beside a document is kept for training.

    A file whose bytes changed since an earlier import is a new document version: labels and
    OCR are keyed by content, so the new bytes get their own. Its upload overwrites the object
    that held the earlier version; when no other object holds those bytes, the labels this
    source gave them are removed (replaced by the new version's): nothing can read that image
    any more, so they could only ever be paired with someone else's."""
    import hashlib
    from pathlib import Path

    from db.documents import DocumentObject, document_at, has_known_source, register_documents
    from db.labels import delete_labels, store_labels
    from db.session import session_scope
    from docformer.io import sniff_media_type
    from docformer.labelled import iter_labelled_folder
    from flows.clients import object_store, sessions
    from flows.ocr_cache import BucketOCRCache

    settings = load_settings()
    store = object_store(settings)
    ocr_cache = BucketOCRCache(store, settings.artifact_bucket)
    folder = Path(args.folder)
    examples = list(iter_labelled_folder(folder))
    prefix = f"{settings.inbox_prefix}{args.prefix or f'labelled/{folder.resolve().name}/'}"
    labels, replaced = 0, 0
    with progress_bar() as progress:
        bar = progress.add_task("importing", total=len(examples))
        for example in examples:
            data = example.document_path.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            key = f"{prefix}{example.document_path.name}"
            etag = store.put_bytes(settings.inbox_bucket, key, data)
            for index, ocr in enumerate(example.ocr_pages or []):
                ocr_cache.put_supplied(sha256, index, ocr)
            with session_scope(sessions(settings)) as session:
                previous = document_at(session, settings.inbox_bucket, key)
                [document] = register_documents(
                    session,
                    [
                        DocumentObject(
                            bucket=settings.inbox_bucket,
                            key=key,
                            sha256=sha256,
                            size=len(data),
                            media_type=sniff_media_type(data) or "application/octet-stream",
                            etag=etag or None,
                        )  # fmt: skip
                    ],
                )
                changed = previous is not None and previous[1] != sha256
                if changed and not has_known_source(session, previous[0]):
                    delete_labels(session, previous[0], args.source)
                    replaced += 1
                labels += store_labels(session, document.id, example.fields, args.source)
            progress.advance(bar)
    print(
        f"{len(examples)} documents, {labels} labels imported from {folder} (source {args.source!r})"
    )
    if replaced:
        print(
            f"{replaced} files changed since they were imported: their new bytes are new "
            "documents, and the labels of their earlier versions were replaced"
        )
    return 0


def cmd_labels_list(args: argparse.Namespace) -> int:
    """Every labelled document with its labels, one column per field (the values fine-tuning
    learns from: where sources disagree, the latest stored value)."""
    from db.labels import labelled_documents

    with open_session() as session:
        labelled = labelled_documents(session, [args.source] if args.source else None)
    names = sorted({name for item in labelled for name in item.labels})
    source = f" from source {args.source!r}" if args.source else ""
    print_rows(
        ["document", "key", *names],
        [(item.document_id, item.key, *(item.labels.get(n) for n in names)) for item in labelled],
        title=f"{len(labelled)} labelled documents{source}",
    )
    return 0


def cmd_labels_export(args: argparse.Namespace) -> int:
    """labels export DIR: every labelled document back in the labelled-folder format (the
    document, `<name>.json` with its labels, `<name>.ocr.json` when every page's OCR is stored),
    for `docformer finetune --data DIR` elsewhere or `docflow labels import DIR` here."""
    from pathlib import Path

    from db.labels import labelled_documents
    from docformer.labelled import LabelledFolderError, write_labelled_example
    from flows.clients import object_store
    from flows.storage import ObjectMissing, ObjectTooLarge
    from flows.tasks_training import DocumentChanged, check_content

    settings = load_settings()
    store = object_store(settings)
    folder = Path(args.folder)
    with open_session() as session:
        labelled = labelled_documents(session, [args.source] if args.source else None)
    names: set[str] = set()
    written, skipped = 0, []
    with progress_bar() as progress:
        bar = progress.add_task("exporting", total=len(labelled))
        for item in labelled:
            try:
                data = store.read_bytes(item.bucket, item.key, settings.max_document_bytes)
                check_content(data, item.sha256, item.bucket, item.key)
                write_labelled_example(
                    folder,
                    _example_name(item.key, item.document_id, names),
                    data,
                    item.labels,
                    _stored_ocr(store, settings.artifact_bucket, item.sha256, item.page_count),
                )
                written += 1
            except (ObjectMissing, ObjectTooLarge, DocumentChanged, LabelledFolderError) as error:
                skipped.append(f"{item.key}: {error}")
            progress.advance(bar)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{written} labelled documents written to {folder}")
    return 0 if not skipped else 1


def _example_name(key: str, document_id: int, taken: set[str]) -> str:
    """A labelled-folder name for the document at `key`: its file name without the extension,
    made safe for a file name, and made unique with the document id when two keys share it."""
    import re
    from pathlib import PurePosixPath

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(key).stem).lstrip(".")
    if not name or name.lower() in taken:
        name = f"{name or 'document'}-{document_id}"
    taken.add(name.lower())  # case-insensitive file systems would merge two names otherwise
    return name


def _stored_ocr(store, bucket: str, sha256: str, page_count: int | None) -> list | None:
    """The OCR of every page of a document, as digitize and fine-tuning read it: the OCR that
    came with an import, else the engine's cache. None unless every page has one (a partial
    `.ocr.json` would pair pages with the wrong OCR), so the reader OCRs the document itself."""
    from docformer.ocr.engine import engine_id as ocr_engine_id
    from flows.ocr_cache import BucketOCRCache

    cache, engine_id = BucketOCRCache(store, bucket, supplied_first=True), ocr_engine_id()
    pages = []
    while page_count is None or len(pages) < page_count:
        ocr = cache.get(sha256, len(pages), engine_id)
        if ocr is None:
            break
        pages.append(ocr)
    if not pages or (page_count is not None and len(pages) != page_count):
        return None
    return pages
