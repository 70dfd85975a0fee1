"""The labelled-folder format: what is written is what is read, and bad folders say why."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from docformer.document import OCRResult, Word
from docformer.labelled import LabelledFolderError, iter_labelled_folder, write_labelled_example


def png_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def page(width: int, height: int, text: str) -> OCRResult:
    words = [
        Word(t, (10.0 * i, 5.0, 10.0 * i + 8, 15.0), 0.9, i // 2)
        for i, t in enumerate(text.split())
    ]
    return OCRResult(width, height, words, "test-engine")


def test_round_trip_with_multi_page_ocr(tmp_path):
    pages = [page(40, 30, "TOTAL 9.00 CASH 10.00"), page(40, 30, "THANK YOU")]
    fields = {"company": "BOOK TA .K (TAMAN DAYA) SDN BHD", "total": "9.00", "date": "25/12/2018"}
    path = write_labelled_example(tmp_path, "r1", png_bytes(), fields, pages)
    assert path == tmp_path / "r1.png"
    (example,) = list(iter_labelled_folder(tmp_path))
    assert example.name == "r1" and example.document_path == path
    assert example.fields == fields
    assert [p.to_dict() for p in example.ocr_pages] == [p.to_dict() for p in pages]
    assert isinstance(json.loads((tmp_path / "r1.ocr.json").read_text()), list)


def test_one_page_is_written_as_a_bare_ocr_object(tmp_path):
    write_labelled_example(
        tmp_path, "p", png_bytes(), {"total": "1.00"}, [page(40, 30, "TOTAL 1.00")]
    )
    assert OCRResult.from_json((tmp_path / "p.ocr.json").read_text()).text == "TOTAL 1.00"
    (example,) = iter_labelled_folder(tmp_path)
    assert example.ocr_pages[0].text == "TOTAL 1.00"


def test_suffix_follows_the_bytes_and_images_are_saved_as_png(tmp_path):
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 20)).save(jpeg, "JPEG")
    pdf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(pdf, "PDF")
    tiff = io.BytesIO()
    Image.new("L", (20, 20)).save(tiff, "TIFF")
    assert write_labelled_example(tmp_path, "a", jpeg.getvalue(), {}).suffix == ".jpg"
    assert write_labelled_example(tmp_path, "b", pdf.getvalue(), {}).suffix == ".pdf"
    assert write_labelled_example(tmp_path, "c", tiff.getvalue(), {}).suffix == ".tif"
    assert (
        write_labelled_example(tmp_path, "d", Image.new("RGB", (5, 5)), {"x": "1"}).suffix == ".png"
    )
    with pytest.raises(LabelledFolderError):
        write_labelled_example(tmp_path, "e", b"not a document", {})
    assert [e.name for e in iter_labelled_folder(tmp_path)] == ["a", "b", "c", "d"]


def test_single_page_ocr_object_and_no_ocr(tmp_path):
    (tmp_path / "one.png").write_bytes(png_bytes())
    (tmp_path / "one.json").write_text('{"total": "12.50"}')
    (tmp_path / "one.ocr.json").write_text(page(40, 30, "TOTAL 12.50").to_json())
    (tmp_path / "two.jpeg").write_bytes(png_bytes())  # content is not checked on reading
    (tmp_path / "two.json").write_text('{"total": 7.5, "tax": null, "date": "2018-03-12"}')
    one, two = iter_labelled_folder(tmp_path)
    assert len(one.ocr_pages) == 1 and one.ocr_pages[0].text == "TOTAL 12.50"
    assert two.ocr_pages is None
    assert two.fields == {"total": "7.5", "date": "2018-03-12"}  # numbers as strings, null dropped


def test_other_files_are_ignored_and_order_is_sorted(tmp_path):
    for name in ["b", "a", "c"]:
        write_labelled_example(tmp_path, name, png_bytes(), {"company": name})
    (tmp_path / "a.lines.csv").write_text("1,2,3,4,5,6,7,8,TOTAL\n")
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "sub").mkdir()
    assert [e.name for e in iter_labelled_folder(tmp_path)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"company": {"name": "X"}}', "flat"),
        ('[{"company": "X"}]', "flat JSON object"),
        ('{"lines": ["a", "b"]}', "flat"),
        ('{"paid": true}', "string or a number"),
        ("{not json", "not valid JSON"),
    ],
)
def test_fields_that_are_not_a_flat_object_are_rejected(tmp_path, content, message):
    (tmp_path / "bad.png").write_bytes(png_bytes())
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(LabelledFolderError, match=message) as error:
        list(iter_labelled_folder(tmp_path))
    assert "bad.json" in str(error.value)


def test_missing_fields_and_ambiguous_names(tmp_path):
    (tmp_path / "x.png").write_bytes(png_bytes())
    with pytest.raises(LabelledFolderError, match="no x.json"):
        list(iter_labelled_folder(tmp_path))
    (example,) = iter_labelled_folder(tmp_path, require_fields=False)
    assert example.fields == {}
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(LabelledFolderError, match="two documents"):
        list(iter_labelled_folder(tmp_path, require_fields=False))


def test_bad_ocr_json_is_reported(tmp_path):
    write_labelled_example(tmp_path, "r", png_bytes(), {"total": "1.00"})
    (tmp_path / "r.ocr.json").write_text(json.dumps([{"width": 10}]))
    with pytest.raises(LabelledFolderError, match="r.ocr.json"):
        list(iter_labelled_folder(tmp_path))
