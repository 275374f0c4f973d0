"""The readers on real files written by real writers (reportlab, python-docx, HTML in UTF-8 and GBK),
and the corpus walk on bad files: nothing outside the corpus is read, no bad file stops the rest."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from rag.chunk import chunk, chunk_document
from rag.ingest import (
    Document,
    ReaderError,
    document_from_json,
    document_to_json,
    load_corpus,
    read_document,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
CJK_SPACE = re.compile(r"[\u4e00-\u9fff，。：；]\s|\s[\u4e00-\u9fff]")
sys.path.insert(0, str(ROOT / "bench"))
import formats  # noqa: E402  (bench/formats.py: the writers)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("formats")
    folders = formats.write_formats(out, CORPUS)
    return {**folders, "html-gbk": out / "html-gbk"}


@pytest.fixture(scope="module")
def loaded(written: dict[str, Path]) -> dict[str, dict[str, Document]]:
    result = {}
    for fmt, folder in written.items():
        docs, skipped = load_corpus(folder)
        assert not skipped, skipped
        result[fmt] = {d.id.rsplit(".", 1)[0]: d for d in docs}
    return result


def assert_exact(doc: Document) -> None:
    """Every block and every passage slices the canonical text to its own text."""
    for block in doc.blocks or ():
        piece = doc.text[block.start : block.end]
        assert piece and piece == piece.strip() and "\n" not in piece, block
    for page in doc.pages:
        assert 0 <= page.start <= page.end <= len(doc.text)
    for p in chunk(doc):
        assert doc.text[p.start : p.end] == p.text
        assert p.format == doc.format
        assert p.line_start == doc.text.count("\n", 0, p.start) + 1


def test_txt_and_md_are_read_as_before(tmp_path: Path) -> None:
    docs, skipped = load_corpus(CORPUS)
    assert not skipped and docs
    for doc in docs:
        assert doc.format == "txt" and doc.blocks is None and doc.title is None
        assert doc.text == (CORPUS / doc.id).read_bytes().decode("utf-8")
        assert chunk(doc) == chunk_document(doc.id, doc.text)
    (tmp_path / "a.md").write_bytes(b"# Title\r\n\r\nSome text.\r\n")
    [md], _ = load_corpus(tmp_path)
    assert md.format == "md" and md.text == "# Title\r\n\r\nSome text.\r\n"
    assert [p.format for p in chunk(md)] == ["md"]


@pytest.mark.parametrize("fmt", ["pdf", "docx", "html", "html-gbk"])
def test_structured_formats_slice_exactly_and_keep_the_sections(fmt: str, loaded: dict[str, dict[str, Document]]) -> None:
    for stem, doc in loaded[fmt].items():
        assert_exact(doc)
        original = (CORPUS / f"{stem}.txt").read_text(encoding="utf-8")
        expected = chunk_document(f"{stem}.txt", original)
        # the same section paths as rag.chunk finds in the text original
        assert {p.section for p in chunk(doc)} == {p.section for p in expected}
        # every content line of the original is one whole line of the canonical text (list bullets dropped)
        lines = set(doc.text.split("\n"))
        squeezed = {re.sub(r"\s+", "", line) for line in lines}
        for item in formats.structure(original, stem)[1]:
            if item.kind not in ("paragraph", "list_item"):
                continue
            if fmt == "pdf" and CJK_SPACE.search(item.text):  # a line break at a space between Chinese words joins it
                assert re.sub(r"\s+", "", item.text) in squeezed, item.text
            else:
                assert item.text in lines, (fmt, item.text)


def test_gbk_page_reads_like_the_utf8_page(loaded: dict[str, dict[str, Document]]) -> None:
    for stem, doc in loaded["html"].items():
        gbk = loaded["html-gbk"][stem]
        assert (gbk.text, gbk.title, gbk.blocks) == (doc.text, doc.title, doc.blocks)


def test_page_furniture_is_dropped(loaded: dict[str, dict[str, Document]]) -> None:
    for doc in loaded["pdf"].values():
        assert "Medical Insurance Guide" not in doc.text and not re.search(r"^- \d+ -$", doc.text, re.M)
        assert len(doc.pages) > 2
    for fmt in ("html", "html-gbk"):
        for doc in loaded[fmt].values():
            assert "tracker" not in doc.text and "大家都在搜" not in doc.text and "版权所有" not in doc.text
            assert "服务指南" not in doc.text  # header breadcrumbs


def test_pdf_pages_are_where_the_writer_put_them(tmp_path: Path) -> None:
    title, items = formats.structure((CORPUS / "family-e-medical-card.txt").read_text(encoding="utf-8"), "family")
    starts = formats.write_pdf(tmp_path / "family.pdf", title, items)
    doc = read_document(tmp_path / "family.pdf", tmp_path)
    assert [p.number for p in doc.pages] == list(range(1, max(starts) + 1))
    passages = chunk(doc)
    for item, page in list(zip(items, starts, strict=True))[::7]:
        if item.kind == "paragraph" and len(item.text) > 20:
            at = doc.text.index(item.text)
            holder = next(p for p in passages if p.start <= at < p.end)
            assert holder.page_start == page, item.text
            assert holder.page_end is not None and holder.page_end >= holder.page_start


def test_pdf_joins_broken_lines_and_normalises_font_artefacts(tmp_path: Path) -> None:
    chinese = "外国人可以使用护照、外国人永久居留证等证件进行绑定，首次激活需要完成实名认证和人脸认证，同一个人最多被六个人绑定。"
    english = "Foreigners can activate the medical insurance electronic voucher through the national app or WeChat, not Alipay."
    radicals = "中国\u2f08民\u2f24学的学生：全角ＡＢＣ１２３"
    items = [formats.Item("title", "标题"), formats.Item("paragraph", chinese), formats.Item("paragraph", english)]
    items.append(formats.Item("paragraph", radicals))
    filler = [formats.Item("paragraph", f"第{i}段：这一段只是为了让文件有好几页，页眉和页码才算重复出现。") for i in range(40)]
    formats.write_pdf(tmp_path / "j.pdf", "标题", items + filler, width_chars=14)
    doc = read_document(tmp_path / "j.pdf", tmp_path)
    assert_exact(doc)
    assert doc.title == "标题"
    assert chinese in doc.text and english in doc.text  # each written over several lines
    assert "中国人民大学的学生：全角ABC123" in doc.text  # Kangxi radicals and full-width ASCII undone, "：" kept
    assert [b.kind for b in doc.blocks or ()][:4] == ["heading", "paragraph", "paragraph", "paragraph"]
    assert len(doc.pages) > 2 and "Medical Insurance Guide" not in doc.text and "- 2 -" not in doc.text


def test_html_entities_headings_and_blocks(tmp_path: Path) -> None:
    page = (
        "<html><head><title>通知 &amp; 公告</title><script>alert(1)</script></head><body>"
        "<nav>导航</nav><h1>一级</h1><p>A &amp; B &lt;c&gt; &#20013;&#x6587;&nbsp;字</p><aside>广告</aside>"
        "<h2>二级</h2><ul><li>第一项</li><li>第二项</li></ul><table><tr><th>名称</th><th>值</th></tr><tr><td>甲</td><td>1</td></tr></table>"
        "<p>跨行的中文\n句子 and English\nwords</p><form><input value=关键词><button>搜索</button></form><noscript>x</noscript>"
        "<footer>页脚</footer></body></html>"
    )
    (tmp_path / "p.htm").write_text(page, encoding="utf-8")
    doc = read_document(tmp_path / "p.htm", tmp_path)
    assert_exact(doc)
    assert doc.format == "html" and doc.title == "通知 & 公告"
    got = [(b.kind, b.level, doc.text[b.start : b.end]) for b in doc.blocks or ()]
    assert got == [
        ("heading", 1, "一级"),
        ("paragraph", 0, "A & B <c> 中文 字"),
        ("heading", 2, "二级"),
        ("list_item", 0, "第一项"),
        ("list_item", 0, "第二项"),
        ("table_row", 0, "名称 | 值"),
        ("table_row", 0, "甲 | 1"),
        ("paragraph", 0, "跨行的中文句子 and English words"),
    ]
    assert [p.section for p in chunk(doc)][-1] == ("通知 & 公告", "一级", "二级")


def test_html_declared_gb2312_is_read_as_gb18030(tmp_path: Path) -> None:
    page = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312"></head>'
    page += "<body><p>医保电子凭证 䶮</p></body></html>"
    (tmp_path / "g.html").write_bytes(page.encode("gb18030"))  # 䶮 is outside GB2312: only GB18030 decodes it
    assert read_document(tmp_path / "g.html", tmp_path).text == "医保电子凭证 䶮\n"


def test_docx_headings_lists_and_tables_in_document_order(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("管理办法", 0)
    d.add_heading("第一章 总则", 1)
    d.add_paragraph("为了规范管理，制定本办法。")
    d.add_paragraph("第一项", style="List Bullet")
    d.add_paragraph("第二项", style="List Number")
    table = d.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "名称", (0, 1): "金额", (1, 0): "门诊", (1, 1): "100元"}.items():
        table.cell(r, c).text = text
    d.add_heading("第一节 范围", 2)
    d.add_paragraph("本办法自发布之日起施行。")
    d.save(str(tmp_path / "m.docx"))
    doc = read_document(tmp_path / "m.docx", tmp_path)
    assert_exact(doc)
    got = [(b.kind, b.level, doc.text[b.start : b.end]) for b in doc.blocks or ()]
    assert got == [
        ("heading", 1, "管理办法"),
        ("heading", 1, "第一章 总则"),
        ("paragraph", 0, "为了规范管理，制定本办法。"),
        ("list_item", 0, "第一项"),
        ("list_item", 0, "第二项"),
        ("table_row", 0, "名称 | 金额"),
        ("table_row", 0, "门诊 | 100元"),
        ("heading", 2, "第一节 范围"),
        ("paragraph", 0, "本办法自发布之日起施行。"),
    ]
    assert doc.title == "管理办法"
    assert [p.section for p in chunk(doc)] == [("管理办法", "第一章 总则"), ("管理办法", "第一章 总则", "第一节 范围")]


def test_documents_round_trip_through_json(loaded: dict[str, dict[str, Document]]) -> None:
    for docs in loaded.values():
        for doc in docs.values():
            assert document_from_json(json.loads(json.dumps(document_to_json(doc), ensure_ascii=False))) == doc
    plain = load_corpus(CORPUS)[0][0]
    assert document_from_json(json.loads(json.dumps(document_to_json(plain)))) == plain


# --- bad files and confinement -------------------------------------------------------------------


def _good_pdf(path: Path, text: str = "正常的文件内容，可以读取。") -> None:
    formats.write_pdf(path, "好", [formats.Item("title", "好文件"), formats.Item("paragraph", text)])


def test_bad_files_are_skipped_with_a_reason_and_the_rest_still_load(tmp_path: Path) -> None:
    import pypdf
    from reportlab.pdfgen.canvas import Canvas

    _good_pdf(tmp_path / "good.pdf")
    (tmp_path / "good.txt").write_text("好的文本。\n", encoding="utf-8")
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "truncated.pdf").write_bytes((tmp_path / "good.pdf").read_bytes()[:300])
    (tmp_path / "random.pdf").write_bytes(os.urandom(4096))
    (tmp_path / "header-only.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2048))
    (tmp_path / "notzip.docx").write_bytes(b"this is not a zip archive at all")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    writer = pypdf.PdfWriter(clone_from=str(tmp_path / "good.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner")
    with open(tmp_path / "encrypted.pdf", "wb") as f:
        writer.write(f)
    scan = Canvas(str(tmp_path / "scan.pdf"))
    scan.rect(72, 72, 300, 500, fill=1)  # an image-like page: drawing, no text
    scan.showPage()
    scan.save()
    docs, skipped = load_corpus(tmp_path)
    assert sorted(d.id for d in docs) == ["good.pdf", "good.txt"]
    reasons = dict(skipped)
    assert set(reasons) == {
        "empty.pdf",
        "truncated.pdf",
        "random.pdf",
        "header-only.pdf",
        "notzip.docx",
        "latin1.txt",
        "encrypted.pdf",
        "scan.pdf",
    }
    assert reasons["empty.pdf"] == "empty file"
    assert reasons["encrypted.pdf"].startswith("encrypted")
    assert reasons["scan.pdf"] == "no text layer (scanned?)"
    assert "not a zip" in reasons["notzip.docx"]
    assert reasons["random.pdf"].startswith("not a PDF")
    assert reasons["latin1.txt"].startswith("not valid UTF-8")
    assert all(reasons[k] for k in ("truncated.pdf", "header-only.pdf"))
    with pytest.raises(ReaderError, match="encrypted"):
        read_document(tmp_path / "encrypted.pdf", tmp_path)


def test_nothing_outside_the_corpus_is_read(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET OUTSIDE\n", encoding="utf-8")
    (tmp_path / "outside.txt").write_text("SECRET SIBLING\n", encoding="utf-8")
    (corpus / "ok.txt").write_text("内容。\n", encoding="utf-8")
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "sibling.txt").symlink_to("../outside.txt")
    (corpus / "dir").symlink_to(outside, target_is_directory=True)
    (corpus / "inside.txt").symlink_to("ok.txt")  # a link that stays inside is fine
    (corpus / "broken.txt").symlink_to("missing.txt")
    (corpus / ".hidden.txt").write_text("hidden\n", encoding="utf-8")
    docs, skipped = load_corpus(corpus)
    assert sorted(d.id for d in docs) == ["inside.txt", "ok.txt"]
    assert not any("SECRET" in d.text or "root:" in d.text for d in docs)
    reasons = dict(skipped)
    assert reasons == {
        "passwd.txt": "links outside the corpus folder",
        "sibling.txt": "links outside the corpus folder",
        "dir": "links outside the corpus folder",
        "broken.txt": "broken link",
    }
    with pytest.raises(ReaderError, match="outside"):
        read_document(corpus / "passwd.txt", corpus)


def test_a_fifo_is_skipped_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "ok.txt").write_text("内容。\n", encoding="utf-8")
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(load_corpus(tmp_path)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "load_corpus blocked on a FIFO"
    docs, skipped = result[0]  # type: ignore[misc]
    assert [d.id for d in docs] == ["ok.txt"] and skipped == [("pipe.txt", "not a regular file")]


def test_a_file_name_that_is_not_utf8_is_skipped_and_printable(tmp_path: Path) -> None:
    fd = os.open(os.path.join(os.fsencode(tmp_path), b"bad\xff.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, "内容。\n".encode())
    os.close(fd)
    (tmp_path / "ok.txt").write_text("内容。\n", encoding="utf-8")
    docs, skipped = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["ok.txt"]
    assert skipped == [("bad\\xff.txt", "file name is not valid UTF-8")]
    print(skipped[0].id)
    json.dumps(skipped, ensure_ascii=False).encode("utf-8")


def test_size_limit_and_cached_documents(tmp_path: Path) -> None:
    _good_pdf(tmp_path / "a.pdf")
    (tmp_path / "big.txt").write_text("大" * 100, encoding="utf-8")
    docs, skipped = load_corpus(tmp_path, max_bytes=350)
    assert [d.id for d in docs] == ["big.txt"] and [s.id for s in skipped] == ["a.pdf"] and "limit" in skipped[0].reason
    docs, _ = load_corpus(tmp_path)
    pdf = next(d for d in docs if d.id == "a.pdf")
    # a cached parse is returned as it is (not parsed again), under the file's current name
    fake = pdf._replace(id="old-name.pdf", text="CACHED TEXT\n", blocks=(), pages=())
    (tmp_path / "a.pdf").rename(tmp_path / "renamed.pdf")
    docs, skipped = load_corpus(tmp_path, cached={pdf.sha256: fake})
    again = next(d for d in docs if d.id == "renamed.pdf")
    assert again == fake._replace(id="renamed.pdf") and not skipped
