"""SROIE benchmark: how well DocFormerv2 reads real receipts it was never trained on, and after
fine-tuning on some of them.

    python -m bench.sroie --data ../shared/data/sroie-train --work .bench/sroie [--model DIR] \
        [--ocr ours|transcriptions]

1. prepare: a working mirror of the data set under --work: symbolic links to the receipts and
   their labels, plus `<id>.ocr.json` beside each, made once and kept, so later runs skip it:
   - `--ocr ours` (the default): our own OCR, PaddleOCR through `docformer.ocr`, which is what
     the product reads;
   - `--ocr transcriptions`: the data set's own line transcriptions (`<id>.lines.csv`: a
     quadrilateral and the text of each line), cut into words with boxes shared out along the
     line by character count. This is the input published SROIE figures are measured on
     ("ground-truth OCR"), so it separates what the model reads from what the OCR saw.
   The receipts are split once and for all: a receipt is
   held out when the first byte of sha1(its id) is below 20 % of 256, which fixes a held-out
   fifth that does not move when files are added or removed. Mirror folders: `heldout/` and
   `train/`.
   Our OCR of a receipt is made again when the default OCR engine changed since it was cached.
   The ceilings of the held-out receipts follow (`ceilings`): per field, how often the label is
   printed in the OCR text exactly (SROIE's rule, which exact match cannot beat), ignoring case,
   and ignoring case and spacing; for dates and amounts also how often it is among the answers
   extraction may choose (`docformer.normalization.typed_spans`). They are printed for the
   words the run reads and, beside them, for the data set's transcriptions.
2. zero-shot: `docformer eval` of the model (default: the shipped checkpoint) on `heldout/`.
3. fine-tuned: `docformer finetune` from that model on `train/` (its own validation split is cut
   from `train/`, never from `heldout/`), then `docformer eval` of the result on `heldout/`.

Everything is printed and written to <work>/results.json with the commands and wall times. The
data set is not part of the project: when --data does not exist the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docformer.document import OCRResult

HELD_OUT_FRACTION = 0.2


def is_held_out(name: str) -> bool:
    return hashlib.sha1(name.encode()).digest()[0] < round(256 * HELD_OUT_FRACTION)


def transcription_ocr(lines_csv: Path, image_path: Path) -> OCRResult:
    """The data set's transcription of a receipt as an OCR result: one line per CSV row (in the
    file's order, which is the receipt's top-to-bottom order), each cut into words at spaces, a
    word's box the part of the line's bounding box its characters take."""
    from PIL import Image

    from docformer.document import OCRResult, Word

    with Image.open(image_path) as image:
        width, height = image.size
    words: list[Word] = []
    line_id = 0  # lines numbered as they hold words
    with lines_csv.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if len(row) < 9:
                continue
            xs, ys = [float(v) for v in row[0:8:2]], [float(v) for v in row[1:8:2]]
            text = ",".join(row[8:])  # an unquoted comma in the text splits it into more cells
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            per_char = (x1 - x0) / max(len(text), 1)
            position, line_words = 0, len(words)
            for piece in text.split(" "):
                if piece:
                    left = x0 + position * per_char
                    box = (left, y0, left + len(piece) * per_char, y1)
                    words.append(Word(piece, box, 1.0, line_id))
                position += len(piece) + 1
            line_id += len(words) > line_words
    return OCRResult(width, height, words, engine="sroie-transcriptions")


def prepare(data: Path, work: Path, threads: int, ocr_source: str = "ours") -> dict[str, int]:
    """Mirror the data set into work/heldout and work/train with cached OCR beside each receipt.
    Our OCR of a receipt is made again when the cached one was made by another engine (its
    `engine` id differs from today's default's), so a change of OCR default is measured."""
    from docformer.io import read_document
    from docformer.ocr import get_engine, ocr_document
    from docformer.ocr.engine import engine_id

    current_engine = engine_id()
    counts = {"heldout": 0, "train": 0, "ocr_made": 0}
    engine = None
    receipts = sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    for index, image_path in enumerate(receipts):
        labels = image_path.with_suffix(".json")
        if not labels.exists():
            continue
        split = "heldout" if is_held_out(image_path.stem) else "train"
        folder = work / split
        folder.mkdir(parents=True, exist_ok=True)
        for source in (image_path, labels):
            link = folder / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
        counts[split] += 1
        ocr_folder = "ocr" if ocr_source == "ours" else f"ocr-{ocr_source}"
        ocr_path = work / ocr_folder / f"{image_path.stem}.ocr.json"
        if not ocr_path.exists() and ocr_source == "transcriptions":
            ocr_path.parent.mkdir(parents=True, exist_ok=True)
            page = transcription_ocr(image_path.with_suffix(".lines.csv"), image_path)
            ocr_path.write_text(page.to_json())
            counts["ocr_made"] += 1
        elif not ocr_path.exists() or _cached_engine(ocr_path) != current_engine:
            engine = engine or get_engine(threads)
            document = ocr_document(read_document(image_path.read_bytes(), str(image_path)), engine)
            ocr_path.parent.mkdir(parents=True, exist_ok=True)
            pages = [page.ocr.to_dict() for page in document.pages]
            tmp = ocr_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(pages[0] if len(pages) == 1 else pages))
            tmp.replace(ocr_path)
            counts["ocr_made"] += 1
            if counts["ocr_made"] % 25 == 0:
                print(f"  OCR {index + 1}/{len(receipts)}", flush=True)
        mirrored = folder / f"{image_path.stem}.ocr.json"
        if mirrored.is_symlink() and mirrored.resolve() != ocr_path.resolve():
            mirrored.unlink()  # this --work was prepared from the other OCR source
        if not mirrored.exists():
            mirrored.symlink_to(ocr_path.resolve())
    return counts


def _cached_engine(ocr_path: Path) -> str | None:
    """The engine id of a cached `.ocr.json` (one page, or the first of a list of pages)."""
    cached = json.loads(ocr_path.read_text())
    return (cached[0] if isinstance(cached, list) else cached).get("engine")


def ocr_ceiling(folder: Path) -> dict[str, dict[str, float]]:
    """The ceilings (`ceilings`) of the receipts in `folder`: each `<id>.json` labels file and
    the `<id>.ocr.json` beside it."""
    receipts = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".ocr.json"))
    return ceilings(
        (
            json.loads(labels_path.read_text()),
            [
                word["text"]
                for word in json.loads(labels_path.with_suffix(".ocr.json").read_text())["words"]
            ],
        )
        for labels_path in receipts
    )


def transcription_ceiling(data: Path) -> dict[str, dict[str, float]]:
    """The ceilings of the held-out receipts read from the data set's own transcriptions
    (`transcription_ocr`), whatever --ocr the run uses: what a perfect reader of the printed
    lines could reach, beside our OCR's."""
    receipts = []
    for lines_csv in sorted(data.glob("*.lines.csv")):
        stem = lines_csv.name.removesuffix(".lines.csv")
        labels, image = data / f"{stem}.json", data / f"{stem}.jpg"
        if is_held_out(stem) and labels.exists() and image.exists():
            words = [word.text for word in transcription_ocr(lines_csv, image).words]
            receipts.append((json.loads(labels.read_text()), words))
    return ceilings(receipts)


def ceilings(receipts: Iterable[tuple[dict, list[str]]]) -> dict[str, dict[str, float]]:
    """Per field and overall: the share of labels printed in the OCR text (each receipt's words
    joined by spaces), compared three ways, each a ceiling for an extractor that copies what the
    OCR read: "in_text" exactly (SROIE's rule), "any_case" ignoring letter case (what a learned
    upper-case style recovers), "any_spacing" ignoring case and whitespace ("Level6" for
    "LEVEL 6"); and for typed fields, how often the label is among the page's typed answers
    ("typed_choice"). `receipts`: (labels, OCR words in reading order) per receipt."""
    from docformer.normalization import typed_spans

    found: dict[str, dict[str, int]] = {}
    labelled: dict[str, int] = {}
    for labels, words in receipts:
        text = " ".join(" ".join(words).split())
        folded, squeezed = text.casefold(), "".join(text.casefold().split())
        for field, value in labels.items():
            value = " ".join(str(value).split())
            if not value:
                continue
            labelled[field] = labelled.get(field, 0) + 1
            counts = found.setdefault(field, {"in_text": 0, "any_case": 0, "any_spacing": 0})
            counts["in_text"] += value in text
            counts["any_case"] += value.casefold() in folded
            counts["any_spacing"] += "".join(value.casefold().split()) in squeezed
            choices = typed_spans(field, text)
            if choices is not None:
                counts["typed_choice"] = counts.get("typed_choice", 0) + (value in choices)
    ceiling = {
        field: {key: round(count / labelled[field], 3) for key, count in counts.items()}
        for field, counts in found.items()
    }
    total = sum(labelled.values())
    ceiling["overall"] = {
        key: round(sum(found[f][key] for f in found) / total, 3) if total else 0.0
        for key in ("in_text", "any_case", "any_spacing")
    }
    return ceiling


def run(command: list[str], log: Path) -> float:
    """Runs a docformer command, its output teed to a log; returns wall seconds."""
    print("$ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            handle.write(line)
            sys.stdout.write(line)
        if process.wait():
            raise SystemExit(f"{command[1]} failed with status {process.returncode}; see {log}")
    return time.perf_counter() - started


# What SROIE labels; a model trained on more fields (a tagger's schema) is scored on these only,
# so a tax or invoice number it reads on a receipt is not counted against it.
SROIE_FIELDS = ("company", "date", "address", "total")


def evaluate(docformer: str, model: str | None, folder: Path, out: Path, device: str) -> dict:
    command = [docformer, "eval", "--data", str(folder), "--json", "--device", device]
    command += ["--fields", ",".join(SROIE_FIELDS)]
    if model:
        command += ["--model", model]
    seconds = run(command, out.with_suffix(".log"))
    text = out.with_suffix(".log").read_text()
    report = json.loads(text[text.index("{") :])
    report["wall_seconds"] = seconds
    report["command"] = shlex.join(command)
    out.write_text(json.dumps(report, indent=1))
    return report


def f1_line(label: str, report: dict) -> str:
    fields = report["scores"]
    parts = [f"{name} {scores['f1']:.3f}" for name, scores in fields.items() if name != "overall"]
    overall = fields["overall"]
    any_case = overall.get("f1_case_insensitive")
    beside = f", any case {any_case:.3f}" if any_case is not None else ""
    return f"{label}: overall F1 {overall['f1']:.3f}{beside} ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sroie-train"))
    parser.add_argument("--work", type=Path, default=Path(".bench/sroie"))
    parser.add_argument("--model", help="model folder (default: the shipped checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ocr", choices=("ours", "transcriptions"), default="ours",
                        help="the words the model reads: our PaddleOCR, or the data set's own "
                        "line transcriptions")  # fmt: skip
    parser.add_argument("--prepare-only", action="store_true",
                        help="OCR, split and the OCR ceiling, then stop")  # fmt: skip
    parser.add_argument("--skip-zero-shot", action="store_true",
                        help="do not score --model on the held-out part before fine-tuning")  # fmt: skip
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument(
        "--finetune-args",
        default="--epochs 15 --patience 3",
        help="extra arguments for docformer finetune",
    )
    parser.add_argument(
        "--pretrain-steps", type=int, default=0,
        help="domain pre-training first: this many steps of docformer pretrain from --model "
        "on the training part's receipts (never the held-out part), then fine-tune from that",
    )  # fmt: skip
    parser.add_argument(
        "--pretrain-args", default="--lr 3e-4 --warmup 50 --batch-size 8",
        help="extra arguments for docformer pretrain",
    )  # fmt: skip
    parser.add_argument(
        "--name", default="",
        help="prefix of this run's outputs in --work (NAME-finetuned, NAME-results.json, ...), "
        "so runs of different settings sit side by side",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data} does not exist: SROIE benchmark skipped")
        return 0
    docformer = str(Path(sys.executable).with_name("docformer"))
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "data": str(args.data),
        "ocr": args.ocr,
    }

    started = time.perf_counter()
    results["split"] = prepare(args.data, args.work, args.threads, args.ocr)
    results["prepare_seconds"] = time.perf_counter() - started
    print(f"split: {results['split']}", flush=True)
    results["ocr_ceiling"] = ocr_ceiling(args.work / "heldout")
    print(f"OCR ceiling (held out, --ocr {args.ocr}): {results['ocr_ceiling']}", flush=True)
    results["transcription_ceiling"] = transcription_ceiling(args.data)
    print(f"transcriptions' ceiling (held out): {results['transcription_ceiling']}", flush=True)
    if args.prepare_only:
        return 0

    def output(name: str) -> Path:
        return args.work / (f"{args.name}-{name}" if args.name else name)

    if not args.skip_zero_shot:
        zero_shot = evaluate(
            docformer, args.model, args.work / "heldout", output("zero_shot.json"), args.device
        )
        results["zero_shot"] = zero_shot
        print(f1_line("zero-shot", zero_shot), flush=True)

    base_model = args.model
    if args.pretrain_steps:
        from docformer.checkpoints import default_model_dir

        pretrained = output("domain-pretrained")
        command = [docformer, "pretrain", "--corpus", str(args.work / "train")]
        command += ["--steps", str(args.pretrain_steps), "--out", str(pretrained)]
        command += ["--threads", str(args.threads), "--device", args.device]
        command += ["--init", args.model or str(default_model_dir())]
        command += shlex.split(args.pretrain_args)
        results["pretrain_command"] = shlex.join(command)
        results["pretrain_seconds"] = run(command, output("pretrain.log"))
        base_model = str(pretrained)

    if not args.skip_finetune:
        tuned = output("finetuned")
        command = [docformer, "finetune", "--data", str(args.work / "train"), "--out", str(tuned)]
        command += ["--device", args.device, *shlex.split(args.finetune_args)]
        if base_model:
            command += ["--model", base_model]
        results["finetune_command"] = shlex.join(command)
        results["finetune_seconds"] = run(command, output("finetune.log"))
        report = evaluate(
            docformer, str(tuned), args.work / "heldout", output("finetuned.json"), args.device
        )
        results["finetuned"] = report
        print(f1_line("fine-tuned", report), flush=True)

    output("results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {output('results.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
