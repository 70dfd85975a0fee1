"""The SROIE benchmark's own parts that need no data set: the fixed held-out split and reading a
receipt's line transcriptions as the words the model reads (`--ocr transcriptions`)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.sroie import is_held_out, transcription_ocr
from docformer.document import OCRResult


def test_transcriptions_become_words_with_boxes_along_their_lines(tmp_path: Path):
    image = tmp_path / "X1.jpg"
    Image.new("RGB", (400, 300), "white").save(image)
    lines = tmp_path / "X1.lines.csv"
    lines.write_text(
        "10,20,110,20,110,40,10,40,TOTAL 9.00\n"
        '12,50,212,52,210,70,10,68,"NO 12, JALAN BUKIT"\n'  # a quoted comma, a tilted box
        "10,80,60,80,60,95,10,95,GST NO, 0001\n"  # an unquoted comma: more cells
        "1,2,3\n"  # not a line
    )
    ocr = transcription_ocr(lines, image)
    assert (ocr.width, ocr.height, ocr.engine) == (400, 300, "sroie-transcriptions")
    assert [w.text for w in ocr.words] == ["TOTAL", "9.00", "NO", "12,", "JALAN", "BUKIT",
                                           "GST", "NO,", "0001"]  # fmt: skip
    assert [w.line_id for w in ocr.words] == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    total, amount = ocr.words[:2]
    # ten characters over 100 px: "TOTAL" takes the first 50, "9.00" starts after the space
    assert total.box == (10.0, 20.0, 60.0, 40.0)
    assert amount.box == (70.0, 20.0, 110.0, 40.0)
    bukit = ocr.words[5]
    assert bukit.box[2] == 212.0 and bukit.box[1] == 50.0 and bukit.box[3] == 70.0
    assert OCRResult.from_dict(ocr.to_dict()) == ocr  # the OCR schema the folders carry


def test_the_held_out_fifth_is_fixed_by_the_name():
    names = [f"X{index:011d}" for index in range(2000)]
    held_out = [name for name in names if is_held_out(name)]
    assert 0.17 < len(held_out) / len(names) < 0.23
    assert held_out == [name for name in names if is_held_out(name)]  # no state between calls
