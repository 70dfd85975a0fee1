"""The Unigram tokenizer: special-token layout, save/load offline, and the `docformer tokenizer`
command over a folder of text and labelled documents."""

from __future__ import annotations

import json

import pytest
from faker import Faker

from docformer.document import OCRResult, Word
from docformer.tokenization import (
    NUM_SENTINELS,
    iter_corpus_texts,
    load_tokenizer,
    main,
    sentinel_ids,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    faker = Faker()
    faker.seed_instance(0)
    return [faker.sentence(10) for _ in range(600)] + [faker.address() for _ in range(200)]


def test_special_tokens_follow_t5(corpus, tmp_path):
    tokenizer = train_tokenizer(corpus, vocab_size=500, out_dir=tmp_path)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = sentinel_ids(tokenizer)
    assert ids == list(range(3, 3 + NUM_SENTINELS))
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["<extra_id_0>", "<extra_id_1>"]
    assert len(tokenizer) == 500
    encoded = tokenizer("Invoice total 12.50 EUR")["input_ids"]
    assert encoded[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in encoded  # digits and punctuation are in the alphabet
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "Invoice total 12.50 EUR"
    # sentinels are single special tokens and vanish from decoded text
    with_sentinel = tokenizer("Total <extra_id_0> due", add_special_tokens=False)["input_ids"]
    assert ids[0] in with_sentinel
    assert "extra_id" not in tokenizer.decode(with_sentinel, skip_special_tokens=True)


def test_saved_tokenizer_reloads_offline_identically(corpus, tmp_path):
    tokenizer = train_tokenizer(corpus, vocab_size=400, out_dir=tmp_path / "tok")
    reloaded = load_tokenizer(tmp_path / "tok")
    words = ["Rechnung", "Nr.", "2024-117", "Gesamt:", "1.234,56", "€"]
    for text in corpus[:50] + [" ".join(words)]:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    a = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    b = reloaded(words, is_split_into_words=True, add_special_tokens=False)
    assert a["input_ids"] == b["input_ids"] and a.word_ids() == b.word_ids()
    assert sentinel_ids(reloaded) == sentinel_ids(tokenizer)


def test_tokenizer_command_reads_text_ocr_and_label_files(corpus, tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "notes.txt").write_text("\n".join(corpus))
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    ocr = OCRResult(
        100, 100, [Word("Quittung", (0, 0, 10, 10), 1.0, 0), Word("Summe", (0, 20, 10, 30), 1.0, 1)]
    )
    (labelled / "r1.ocr.json").write_text(ocr.to_json())
    (labelled / "r1.json").write_text(
        json.dumps({"vendor": "Bäckerei Süß", "items": [{"name": "Brezel"}]})
    )
    texts = list(iter_corpus_texts([tmp_path / "corpus", labelled]))
    for expected in ("Quittung", "Summe", "vendor", "Bäckerei Süß", "name", "Brezel", corpus[0]):
        assert expected in texts

    out = tmp_path / "out"
    argv = [
        "--corpus",
        str(tmp_path / "corpus"),
        str(labelled),
        "--vocab-size",
        "400",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert load_tokenizer(out)("Summe")["input_ids"][-1] == 1
    (tmp_path / "empty").mkdir()
    assert main(["--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 1


def test_command_is_registered_in_the_docformer_cli():
    from docformer.cli import COMMANDS

    assert COMMANDS["tokenizer"][0] == "docformer.tokenization"
