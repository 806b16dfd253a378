"""PDF and TIFF pages as PaddleX 3.7.2 reads them, checked against PaddleX's own output on the
same files (tests/fixtures/pages, made by its make_fixture.py with PaddleX itself): every
page classified, ``page_index`` 0..n-1, ``<stem>_<page>_res`` names, scores within 1e-4,
through Python, the CLI and HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mlcls import create_pipeline
from mlcls.serving.runner import BackgroundServer
from mlcls.serving.settings import ServeSettings

FIXTURE = Path(__file__).parent / "fixtures" / "pages"
EXPECTED = FIXTURE / "expected"
DOCUMENTS = {"doc.pdf": 3, "pages.tiff": 3, "single.tif": 1}
TOLERANCE = 1e-4


def expected(stem: str, page: int) -> dict[int, float]:
    data = json.loads((EXPECTED / f"{stem}_{page}_res.json").read_text())
    assert data["page_index"] == page
    return dict(zip(data["class_ids"], data["scores"]))


def assert_scores_match(stem: str, page: int, class_ids, scores) -> None:
    want = expected(stem, page)
    got = dict(zip(class_ids, scores))
    assert set(got) == set(want) and len(want) == 80
    worst = max(abs(got[c] - want[c]) for c in want)
    assert worst <= TOLERANCE, f"{stem} page {page}: off by {worst:.2e}"


@pytest.fixture(scope="module")
def pipeline(reference_dir):
    with create_pipeline(model_dir=reference_dir / "model" / "PP-LCNet_x1_0_ML",
                         device="cpu", threshold=0.0, batch_size=2) as p:
        yield p


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_page_matches_paddlex(pipeline, name, tmp_path):
    results = list(pipeline.predict(str(FIXTURE / name)))
    assert [r["page_index"] for r in results] == list(range(DOCUMENTS[name]))
    stem = Path(name).stem
    for res in results:
        assert res.ok and res["input_path"] == str(FIXTURE / name)
        assert_scores_match(stem, res["page_index"], res["class_ids"], res["scores"])
        res.save_all(tmp_path)
    paddlex_names = {n for n in (EXPECTED / "saved_files.txt").read_text().split()
                     if n.startswith(f"{stem}_")}
    assert {p.name for p in tmp_path.iterdir()} == paddlex_names


def test_a_directory_picks_up_pdfs_and_keeps_sub_folders(pipeline, tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "a" / "doc.pdf").write_bytes((FIXTURE / "doc.pdf").read_bytes())
    (tmp_path / "in" / "b" / "doc.pdf").write_bytes((FIXTURE / "doc.pdf").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "mlcls.cli", "--pipeline",
                           "multi_label_image_classification", "--model_dir",
                           str(pipeline.model.model_dir), "--device", "cpu", "--threshold",
                           "0", "--input", str(tmp_path / "in"), "--save_path",
                           str(tmp_path / "out"), "-q"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "6 of 6 image(s)" in proc.stderr
    for folder in ("a", "b"):
        names = sorted(p.name for p in (tmp_path / "out" / folder).iterdir())
        assert names == [f"doc_{i}_res.{ext}" for i in range(3) for ext in ("json", "png")]
        saved = json.loads((tmp_path / "out" / folder / "doc_2_res.json").read_text())
        assert_scores_match("doc", 2, saved["class_ids"], saved["scores"])


def test_pages_from_bytes_in_python(pipeline):
    results = list(pipeline.predict((FIXTURE / "pages.tiff").read_bytes()))
    assert [r["page_index"] for r in results] == [0, 1, 2]
    for res in results:
        assert_scores_match("pages", res["page_index"], res["class_ids"], res["scores"])


def test_http_returns_every_page_up_to_the_limit(pipeline):
    data = base64.b64encode((FIXTURE / "doc.pdf").read_bytes()).decode()
    settings = ServeSettings(port=0, log_level="warning", max_pages=2)
    with BackgroundServer(pipeline, settings) as srv:
        body = requests.post(srv.url + "/multilabel-image-classification",
                             json={"image": data, "visualize": False}, timeout=120).json()
        single = requests.post(srv.url + "/multilabel-image-classification",
                               json={"image": base64.b64encode(
                                   (FIXTURE / "single.tif").read_bytes()).decode(),
                                   "visualize": False}, timeout=120).json()
    assert body["errorCode"] == 0, body
    pages = body["result"]["pages"]
    assert [p["pageIndex"] for p in pages] == [0, 1]  # max_pages
    for page in pages:
        cats = page["categories"]
        assert_scores_match("doc", page["pageIndex"], [c["id"] for c in cats],
                            [c["score"] for c in cats])
    assert body["result"]["categories"] == pages[0]["categories"]
    assert [p["pageIndex"] for p in single["result"]["pages"]] == [0]


def test_a_broken_pdf_is_reported_and_the_rest_run(pipeline, tmp_path):
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n" + b"garbage" * 10)
    results = list(pipeline.predict([str(tmp_path / "bad.pdf"), str(FIXTURE / "single.tif")]))
    assert not results[0].ok and "not a readable PDF" in results[0]["error"]
    assert results[1].ok and results[1]["page_index"] == 0


def test_a_document_s_pages_together_stay_within_the_server_s_pixel_limit(pipeline):
    """The pages of one request are held at once: their sum is bounded, not each alone."""
    data = base64.b64encode((FIXTURE / "doc.pdf").read_bytes()).decode()
    # doc.pdf renders at scale 2 to 320x320, 400x300 and 240x320 pixels
    settings = ServeSettings(port=0, log_level="warning", max_pixels=320 * 320 + 400 * 300)
    with BackgroundServer(pipeline, settings) as srv:
        resp = requests.post(srv.url + "/multilabel-image-classification",
                             json={"image": data, "visualize": False}, timeout=120)
    assert resp.status_code == 413
    assert "pages 0 to 2 together are 299200 pixels" in resp.json()["errorMsg"]


def test_a_page_that_fails_says_which_page(pipeline, monkeypatch):
    """A TIFF frame over the pixel limit fails alone, named by its page; a PDF page is
    rendered smaller instead, as PaddleX does."""
    monkeypatch.setenv("MLCLS_MAX_PIXELS", "28000")  # frame 0 is 200x150, the others fit
    results = list(pipeline.predict(str(FIXTURE / "pages.tiff")))
    assert [r.ok for r in results] == [False, True, True], results
    assert results[0]["error"].startswith("page 0: 200x150 is 30000 pixels, over the limit")
    pdf = list(pipeline.predict(str(FIXTURE / "doc.pdf")))  # pages of 102400 and more at 2x
    assert all(r.ok for r in pdf)
