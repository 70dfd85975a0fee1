"""The most a word tagger can score on a labelled folder: its labels aligned to the OCR words
(`docformer.alignment`, as `docformer finetune --head tagging` aligns them), turned into word
tags, and read back by the tagger's own decoding (`docformer.tagging.decode_spans`, the typed
cut of `span_value`, the learned value style), as if the model had put all its belief on the
training targets. A field scoring below 1.0 here is lost before any model runs: the value is
not printed as the label writes it, shares a word with another field (one word takes one tag),
or decoding reads a different copy or a different piece of the tagged words.

    python -m bench.tagging_ceiling --data .build/checkpoint/corpus [--documents 1000]
    python -m bench.tagging_ceiling --data ../shared/data/sroie-train --ocr-cache .bench/sroie/ocr \
        --engine-ocr --fields company,date,address,total

Prints, per field: labelled values, aligned (by which method), words claimed by two fields,
and the ceiling F1 exact and any case; `--errors N` lists N lost values per field. Exits 0 and
says so when --data does not exist.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

FIELDS = ("company", "date", "address", "total", "invoice_number", "tax", "currency")


def ceiling(examples, fields, styles=None):
    """(per-field scores, per-field lost values, per-field count of words two fields claim)."""
    import numpy as np

    from docformer.alignment import align_examples
    from docformer.metrics import score_fields
    from docformer.tagging import decode_spans, span_text, span_value, word_tags
    from docformer.value_style import learn_value_styles

    aligned, report = align_examples(
        [
            ({name: value for name, value in ex.fields.items() if name in fields and value},
             [ocr for _, ocr in ex.pages])
            for ex in examples
        ]
    )  # fmt: skip
    if styles is None:
        styles = learn_value_styles(
            {n: [ex.fields[n] for ex in examples if ex.fields.get(n)] for n in fields}
        )
    n_tags = 1 + 2 * len(fields)
    shared_words = collections.Counter()
    predictions, lost = [], collections.defaultdict(list)
    for example, alignments in zip(examples, aligned, strict=True):
        best: dict[str, tuple[float, str]] = {}
        for page_index, (_, ocr) in enumerate(example.pages):
            spans = {name: a.word_indices for name, a in alignments.items() if a.page == page_index}
            claimed = collections.Counter(w for words in spans.values() for w in words)
            for name, words in spans.items():
                shared_words[name] += sum(claimed[w] > 1 for w in words)
            tags = word_tags(len(ocr.words), spans, fields)
            # All belief on the target tag, a little on every other one (decoding takes logs).
            probs = np.full((len(ocr.words), n_tags), 1e-4, dtype=np.float32)
            probs[np.arange(len(tags)), tags] = 1.0 - 1e-4 * (n_tags - 1)
            for name, span in decode_spans(probs, fields, ocr).items():
                printed = span_value(name, span_text(ocr, span))
                style = styles.get(name)
                value = style.apply(printed) if style is not None else printed
                if name not in best or span.confidence > best[name][0]:
                    best[name] = (span.confidence, value)
        prediction = {name: value for name, (_, value) in best.items()}
        predictions.append(prediction)
        for name in fields:
            gold = " ".join(str(example.fields.get(name) or "").split())
            got = " ".join(str(prediction.get(name) or "").split())
            if gold and got != gold:
                how = alignments[name].method if name in alignments else "not aligned"
                lost[name].append((example.name, gold, got, how))
    scores = score_fields(predictions, [ex.fields for ex in examples], list(fields))
    return scores, lost, shared_words, report.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a labelled folder")
    parser.add_argument("--fields", default=",".join(FIELDS))
    parser.add_argument("--documents", type=int, help="at most this many (sorted by name)")
    parser.add_argument("--ocr-cache", type=Path, help="OCR cache folder (with --engine-ocr)")
    parser.add_argument(
        "--engine-ocr", action="store_true", help="OCR the pages, ignoring .ocr.json files"
    )
    parser.add_argument("--errors", type=int, default=0, help="list this many lost values")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data} does not exist: skipped")
        return 0

    from itertools import islice

    from docformer.labelled import iter_labelled_folder
    from docformer.training.data import TrainingExample, load_pages

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    labelled = list(islice(iter_labelled_folder(args.data), args.documents))
    if not args.engine_ocr and all(example.ocr_pages is not None for example in labelled):
        # The folder carries its OCR: no page image needs reading (the tagger's targets and its
        # decoding use the words alone).
        examples = [
            TrainingExample(e.name, [(None, ocr) for ocr in e.ocr_pages], e.fields)
            for e in labelled
        ]
    else:
        examples = load_pages(
            [str(args.data)],
            args.ocr_cache,
            args.documents,
            image_size=(1, 1),
            ocr_files=not args.engine_ocr,
        )
    scores, lost, shared_words, alignment = ceiling(examples, fields)
    print(f"{len(examples)} documents from {args.data}")
    print(
        f"{'field':<16}{'labelled':>9}{'aligned':>9}{'shared':>8}{'F1 exact':>10}{'any case':>10}"
    )
    for name in [*fields, "overall"]:
        score = scores[name]
        report = alignment.get(name, {}) if name != "overall" else {}
        print(
            f"{name:<16}{score.support:>9}{report.get('aligned', ''):>9}"
            f"{shared_words.get(name, '') if name != 'overall' else '':>8}"
            f"{score.f1:>10.3f}{score.f1_case_insensitive:>10.3f}"
        )
    for name in fields:
        for document, gold, got, how in lost[name][: args.errors]:
            print(f"  {name}: {document}: label {gold!r}, read {got!r} ({how})")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "documents": len(examples),
                    "scores": {name: score.to_dict() for name, score in scores.items()},
                    "alignment": alignment,
                    "shared_words": dict(shared_words),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
