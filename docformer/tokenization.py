"""The DocFormerv2 tokenizer: a Unigram model (the algorithm behind T5's sentencepiece) trained here
with Hugging Face `tokenizers` on the project's own corpus, wrapped as a `T5TokenizerFast`.

Layout of the vocabulary: `<pad>` = 0, `</s>` = 1, `<unk>` = 2 (T5's ids, so a `T5Config`'s
pad/eos/decoder-start defaults hold), then the 100 span-corruption sentinels `<extra_id_0>` ..
`<extra_id_99>` (ids 3..102), then the learned pieces. Text is NFKC-normalised and split on
whitespace with the Metaspace pre-tokenizer ("▁" marks a word start), like sentencepiece. Case is
kept: field values are case-sensitive. Every printable ASCII character is seeded into the
alphabet so digits and punctuation never fall to `<unk>` just because the corpus lacked them.

Command: `docformer tokenizer --corpus DIR_OR_FILE... --vocab-size N --out DIR` reads `.txt`
files (one text per line) and, in labelled folders, `<name>.ocr.json` (OCR words, one text per
line of the page) and `<name>.json` (every string in it: field names and values, since prompts
name fields and answers are values).
"""

from __future__ import annotations

import argparse
import json
import string
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, T5TokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
NUM_SENTINELS = 100
SENTINELS = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
INITIAL_ALPHABET = [c for c in string.printable if not c.isspace()] + list("€£¥°§±×÷«»")


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None
) -> T5TokenizerFast:
    """Trains a Unigram tokenizer on `texts`; saves it to `out_dir` when given.

    `vocab_size` counts the 103 special tokens; a corpus too small for it yields fewer pieces.
    """
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, UNK, *SENTINELS],
        unk_token=UNK,
        initial_alphabet=INITIAL_ALPHABET,
        show_progress=False,
    )
    tokenizer.train_from_iterator((t for t in texts if t and not t.isspace()), trainer=trainer)
    wrapped = _wrap(tokenizer)
    if out_dir is not None:
        wrapped.save_pretrained(str(out_dir))
    return wrapped


def _wrap(tokenizer: Tokenizer) -> T5TokenizerFast:
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        extra_ids=0,  # the sentinels are already in the vocabulary
        additional_special_tokens=SENTINELS,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
    )


def load_tokenizer(path: str | Path) -> T5TokenizerFast:
    """Loads a tokenizer saved by `train_tokenizer` (or with a model/processor), offline.

    Built from the saved `tokenizer.json` itself: `T5TokenizerFast.from_pretrained` in
    transformers 5 rebuilds T5's own pipeline around the vocabulary, dropping our NFKC
    normaliser and changing the pre-tokenizer, so a reloaded tokenizer would split some text
    differently from the one that was trained.
    """
    return _wrap(Tokenizer.from_file(str(Path(path) / "tokenizer.json")))


def sentinel_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order."""
    ids = tokenizer.convert_tokens_to_ids(SENTINELS)
    if tokenizer.unk_token_id in ids:
        raise ValueError("tokenizer lacks the <extra_id_N> sentinel tokens")
    return ids


def iter_corpus_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Texts of a corpus: files as given, folders walked in sorted order."""
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            yield from _texts_of_file(file)


def _texts_of_file(file: Path) -> Iterator[str]:
    name = file.name
    if name.endswith(".txt"):
        yield from file.read_text(encoding="utf-8", errors="replace").splitlines()
    elif name.endswith(".ocr.json"):
        from docformer.labelled import read_ocr

        # One page or a list of pages, as the labelled-folder format allows.
        for ocr in read_ocr(file):
            yield from (" ".join(w.text for w in line) for line in ocr.lines())
    elif name.endswith(".json"):
        yield from _strings_in(json.loads(file.read_text(encoding="utf-8")))


def _strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="docformer tokenizer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--corpus", nargs="+", required=True, help="folders or files (.txt, .ocr.json, .json)"
    )
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--out", required=True, help="folder to save the tokenizer to")
    args = parser.parse_args(argv)

    texts = [t for t in iter_corpus_texts(args.corpus) if t.strip()]
    if not texts:
        print("no text found in the corpus")
        return 1
    tokenizer = train_tokenizer(texts, args.vocab_size, args.out)
    print(f"trained on {len(texts)} texts: vocabulary {len(tokenizer)} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
