"""PDF, EPUB, DOCX and HTML inputs: text and structure out, chunking on them, damaged files reported."""

import io
import json
import logging
import re
import zipfile
from pathlib import Path

import docx
import pypdf
import pytest

from datagen.text.chunking import chunk_documents
from datagen.errors import DatagenError
from datagen.text.ingest import iter_documents, read_document
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error

LOGGER = "datagen.text.ingest"

PAGE = b"""<!DOCTYPE html>
<html><head><title>Page title</title><style>p { color: red; }</style>
<script>var leaked = "script text";</script></head>
<body>
<!-- a comment -->
<h1>The   Lighthouse</h1>
<p>The keeper climbed
   the stair at <em>dusk</em>.</p>
<p>He lit the lamp&nbsp;and watched the sea.<br>The waves came in.</p>
<script>document.write("more script")</script>
<h2>Night</h2>
<div><p>It was a long night.</p><ul><li>wind</li><li>rain</li></ul></div>
<noscript>Enable JavaScript</noscript>
<pre>Tide    high
Wind    north</pre>
</body></html>
"""
PAGE_TEXT = ("# The Lighthouse\n\nThe keeper climbed the stair at dusk.\n\nHe lit the lamp and watched the sea.\n"
             "The waves came in.\n\n## Night\n\nIt was a long night.\n\nwind\n\nrain\n\nTide high\nWind north\n")


def _literal(line: str) -> str:
    return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: a page for each list of lines, set in Helvetica; an empty line leaves a gap."""
    return pdf_of_streams(["BT /F1 12 Tf 14 TL 72 720 Td " + "".join(f"{_literal(line)} Tj T* " if line else "T* "
                                                                    for line in lines) + "ET" for lines in pages])


def placed_pdf(pages: list[list[tuple]]) -> bytes:
    """A PDF whose lines are placed where told: a page for each list of (x, y, text) or (x, y, text, size), in
    that order in the page's content (which need not be reading order); Helvetica, 11 pt unless told."""
    return pdf_of_streams([" ".join(f"BT /F1 {item[3] if len(item) > 3 else 11} Tf {item[0]} {item[1]} Td "
                                    f"{_literal(item[2])} Tj ET" for item in items) for items in pages])


def pdf_of_streams(streams: list[str]) -> bytes:
    """A valid PDF with a page (US Letter) for each content stream, and the font F1 (Helvetica)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(streams)))
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {len(streams)} >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    for i, stream in enumerate(streams):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def locked_pdf() -> bytes:
    """A PDF that opens only with a password."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_bytes([["A secret."]]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def xhtml(title: str, *paragraphs: str) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
            f"<title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>")


def write_epub(path: Path, chapters: dict[str, str], spine: list[str]) -> Path:
    """An EPUB 3 by hand: chapters (file name under OEBPS/text/ -> XHTML), read in `spine` order, plus a
    navigation document that is in the spine too (as some books have it) and must not be read as text."""
    items = "".join(f'<item id="c{i}" href="text/{name.replace(" ", "%20")}" media-type="application/xhtml+xml"/>'
                    for i, name in enumerate(chapters))
    ids = {name: f"c{i}" for i, name in enumerate(chapters)}
    refs = "".join(f'<itemref idref="{ids[name]}"/>' for name in spine)
    package = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
               '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Book</dc:title></metadata>'
               f'<manifest><item id="nav" href="nav.xhtml" properties="nav" media-type="application/xhtml+xml"/>'
               f'{items}</manifest><spine><itemref idref="nav"/>{refs}</spine></package>')
    container = ('<?xml version="1.0"?><container version="1.0" '
                 'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                 '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                 "</rootfiles></container>")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/epub+zip")
        book.writestr("META-INF/container.xml", container)
        book.writestr("OEBPS/content.opf", package)
        book.writestr("OEBPS/nav.xhtml", xhtml("Contents", "Table of contents entry"))
        for name, page in chapters.items():
            book.writestr(f"OEBPS/text/{name}", page)
    return path


def write_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("The Lighthouse", level=0)
    document.add_heading("Chapter One", level=1)
    document.add_paragraph("The keeper climbed the stair at dusk.")
    verse = document.add_paragraph("He lit the lamp,")
    verse.add_run().add_break()
    verse.add_run("and watched   the sea.")
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Tide", "High"), ("Wind", "North")]):
        for cell, text in zip(row.cells, cells):
            cell.text = text
    document.add_heading("Chapter Two", level=2)
    document.add_paragraph("It was a long night.")
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(path)
    return path


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_corpus(folder: Path) -> None:
    """One good file of each format."""
    write(folder / "a.html", PAGE)
    write_docx(folder / "b.docx")
    write_epub(folder / "c.epub", {"one.xhtml": xhtml("Dawn", "The boat came in."),
                                   "two.xhtml": xhtml("Dusk", "The boat went out.")}, ["one.xhtml", "two.xhtml"])
    write(folder / "d.pdf", pdf_bytes([["Chapter One", "", "The keeper climbed the stair."]]))
    write(folder / "e.md", b"# Notes\n\nPlain Markdown still reads as it is.\n")


# --- text and structure, format by format ----------------------------------------------------------------------


def test_html_keeps_headings_paragraphs_and_line_breaks_and_leaves_out_scripts_and_styles(tmp_path):
    text = read_document(write(tmp_path / "page.html", PAGE))
    assert text == PAGE_TEXT
    for hidden in ("script", "leaked", "color", "Page title", "comment", "JavaScript"):
        assert hidden not in text


@pytest.mark.parametrize("suffix", [".htm", ".xhtml", ".HTML"])
def test_other_html_suffixes_read_as_html(tmp_path, suffix):
    assert read_document(write(tmp_path / f"page{suffix}", PAGE)) == PAGE_TEXT


def test_html_charset_declared_in_the_page_is_honoured(tmp_path):
    page = '<html><head><meta charset="windows-1252"></head><body><p>Café “au lait”</p></body></html>'
    assert read_document(write(tmp_path / "cp1252.html", page.encode("cp1252"))) == "Café “au lait”\n"


def test_docx_keeps_headings_paragraphs_line_breaks_and_tables(tmp_path):
    text = read_document(write_docx(tmp_path / "book.docx"))
    assert text == ("# The Lighthouse\n\n# Chapter One\n\nThe keeper climbed the stair at dusk.\n\n"
                    "He lit the lamp,\nand watched the sea.\n\nTide | High\nWind | North\n\n"
                    "## Chapter Two\n\nIt was a long night.\n")


def test_epub_reads_chapters_in_spine_order_without_the_table_of_contents(tmp_path):
    chapters = {"a first.xhtml": xhtml("Chapter Two", "The boat went out.", "Gulls followed."),
                "b second.xhtml": xhtml("Chapter One", "The boat came in.")}
    path = write_epub(tmp_path / "book.epub", chapters, spine=["b second.xhtml", "a first.xhtml"])
    text = read_document(path)
    assert text == ("# Chapter One\n\nThe boat came in.\n\n"
                    "# Chapter Two\n\nThe boat went out.\n\nGulls followed.\n")
    assert "Contents" not in text


def test_pdf_keeps_pages_and_paragraphs(tmp_path):
    pages = [["Chapter One", "", "The keeper climbed the stair at dusk.", "He lit the lamp (and waited).", "",
              "It was a long night."],
             ["Chapter Two", "", "Morning came grey."]]
    text = read_document(write(tmp_path / "book.pdf", pdf_bytes(pages)))
    assert text == ("Chapter One\n\nThe keeper climbed the stair at dusk.\nHe lit the lamp (and waited).\n\n"
                    "It was a long night.\n\nChapter Two\n\nMorning came grey.\n")


# Two pages set in two columns, as a report is: a running header, and a page number in the footer.
LEFT = [["The lamp was lit at dusk on every", "night of the year, and the keeper", "wound the clockwork that",
         "turned the lens every four hours.", "", "Oil came up the stair in cans",
         "that he carried two at a time, while"],
        ["In the great storm the glass of the", "lantern cracked, and he mended it", "with canvas and tar before",
         "the dark came down over the bay."]]
RIGHT = [["supplies came by boat once a month", "in summer and once a quarter in", "winter, when the crossing was",
          "often too rough for the small boat"],
         ["The inspector who came in spring", "wrote that the light had never", "failed in thirty years of its",
          "service to the ships at sea."]]


def two_column_page(number: int, left: list[str], right: list[str], by_row: bool) -> list[tuple]:
    """A page of `left` and `right` columns under a running header, over "Page N". `by_row`: the content lists
    the lines row by row across the columns (where plain extraction would interleave them)."""
    cells = [[(50, 700 - 14 * row, text) for row, text in enumerate(left) if text],
             [(320, 700 - 14 * row, text) for row, text in enumerate(right) if text]]
    body = sorted(cells[0] + cells[1], key=lambda cell: -cell[1]) if by_row else cells[0] + cells[1]
    return [(50, 750, "HARBOUR LIGHT ANNUAL REPORT", 9), *body, (290, 40, f"Page {number}", 9)]


@pytest.mark.parametrize("by_row", [False, True], ids=["content-by-column", "content-by-row"])
def test_a_two_column_pdf_is_read_column_by_column_without_running_headers_or_page_numbers(tmp_path, by_row):
    pages = [two_column_page(n + 1, LEFT[n], RIGHT[n], by_row) for n in range(2)]
    text = read_document(write(tmp_path / "report.pdf", placed_pdf(pages)))
    # The first page's left column ends mid-sentence: its right column goes on with the same paragraph.
    assert text == ("The lamp was lit at dusk on every\nnight of the year, and the keeper\nwound the clockwork that\n"
                    "turned the lens every four hours.\n\nOil came up the stair in cans\n"
                    "that he carried two at a time, while\n"
                    "supplies came by boat once a month\nin summer and once a quarter in\n"
                    "winter, when the crossing was\noften too rough for the small boat\n\n"
                    "In the great storm the glass of the\nlantern cracked, and he mended it\n"
                    "with canvas and tar before\nthe dark came down over the bay.\n\n"
                    "The inspector who came in spring\nwrote that the light had never\n"
                    "failed in thirty years of its\nservice to the ships at sea.\n")


def test_a_title_across_both_columns_keeps_its_place_above_them(tmp_path):
    page = [(50, 740, "NOTES ON THE KEEPING OF A REMOTE LIGHT STATION IN WINTER"),
            *[(50, 700 - 14 * row, text) for row, text in enumerate(LEFT[1])],
            *[(320, 700 - 14 * row, text) for row, text in enumerate(RIGHT[1])]]
    text = read_document(write(tmp_path / "notes.pdf", placed_pdf([page])))
    assert text == ("NOTES ON THE KEEPING OF A REMOTE LIGHT STATION IN WINTER\n\n" + "\n".join(LEFT[1]) + "\n\n"
                    + "\n".join(RIGHT[1]) + "\n")


def test_one_column_pdf_loses_its_running_lines_and_keeps_the_rest(tmp_path):
    body = [["The keeper climbed the stair at dusk.", "All is well.", "He lit the lamp and waited.",
             "The oil was low.", "He wrote it down."],
            ["The wind rose in the night.", "All is well.", "The glass held.", "The lamp burned on.", "Rain came."],
            ["Morning came grey over the bay.", "All is well.", "The boat was late.", "Gulls rode the swell.",
             "He slept."]]
    pages = [[(72, 760, "The Keeper's Log", 9), (72, 740, f"{n + 7}", 9),
              *[(72, 700 - 14 * row, line) for row, line in enumerate(lines)],
              (500, 40, f"Page {n + 1} of 3", 9)] for n, lines in enumerate(body)]
    text = read_document(write(tmp_path / "log.pdf", placed_pdf(pages)))
    # The header, the page numbers at the top and "Page N of 3" go; a line repeated on every page, but in its
    # text rather than above or below it, stays.
    assert text == "".join("\n".join(lines) + "\n\n" for lines in body).removesuffix("\n")


def test_a_one_page_pdf_keeps_its_first_and_last_lines(tmp_path):
    page = [(72, 760, "Report 3", 9), (72, 700, "The keeper climbed the stair at dusk."), (290, 40, "Page 1", 9)]
    text = read_document(write(tmp_path / "one.pdf", placed_pdf([page])))
    assert text == "Report 3\n\nThe keeper climbed the stair at dusk.\n\nPage 1\n"


def test_a_table_of_short_cells_is_read_row_by_row(tmp_path):
    rows = [("Monday", "north, 3 knots"), ("Tuesday", "west, 5 knots"), ("Wednesday", "calm"),
            ("Thursday", "south, 2 knots")]
    page = [(72, 720, "The week's winds were these, as the keeper wrote them down:"),
            *[(x, 700 - 14 * row, cell) for row, cells in enumerate(rows) for x, cell in zip((72, 320), cells)]]
    text = read_document(write(tmp_path / "table.pdf", placed_pdf([page])))
    lines = text.splitlines()
    assert [" ".join(line.split()) for line in lines[1:]] == [" ".join(cells) for cells in rows]


# --- through ingest and chunking --------------------------------------------------------------------------------


def test_a_folder_of_every_format_is_read_and_chunks_index_into_read_document(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(Path("corpus"))

    documents = list(iter_documents(["corpus"]))

    assert [d.source for d in documents] == ["corpus/a.html", "corpus/b.docx", "corpus/c.epub", "corpus/d.pdf",
                                             "corpus/e.md"]
    assert documents[0].text == PAGE_TEXT
    chunks = list(chunk_documents(documents, 16))
    assert {c.source for c in chunks} == {d.source for d in documents}
    for chunk in chunks:
        assert read_document(Path(chunk.source))[chunk.start:chunk.end] == chunk.text
    # A heading opens its chunk, with text under it, rather than ending the chunk before.
    headings = [c.text for c in chunks if c.text.startswith("# Dusk")]
    assert headings and all("The boat went out." in h for h in headings)


def test_chunk_command_reads_every_format(workspace):
    write_corpus(workspace / "corpus")

    result = run_cli("chunk", "corpus", "--max-tokens", "40", "--out", "chunks.jsonl", cwd=workspace)

    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (workspace / "chunks.jsonl").read_text().splitlines()]
    assert {Path(r["source"]).suffix for r in rows} == {".html", ".docx", ".epub", ".pdf", ".md"}
    for row in rows:
        assert read_document(workspace / row["source"])[row["start"]:row["end"]] == row["text"]


# --- damaged files --------------------------------------------------------------------------------------------

CORRUPT = {
    "bad.pdf": (b"%PDF-1.7\nthis is not really a PDF\n", "cannot read as PDF"),
    "bad.docx": (b"PK\x03\x04 not really a zip archive", "cannot read as DOCX"),
    "bad.epub": (None, "cannot read as EPUB"),  # a sound zip that is no EPUB: made in `write_corrupt`
    "bad.html": (b"<html>\x00\x01\x02\x00 binary", "cannot read as HTML"),
    "blank.pdf": (pdf_bytes([[]]), "holds no text"),  # a page with no text, as a scan without OCR
    "locked.pdf": (locked_pdf(), "cannot read as PDF (File has not been decrypted)"),
}


def write_corrupt(folder: Path, name: str) -> Path:
    data = CORRUPT[name][0]
    if data is None:
        path = folder / name
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mimetype", "application/epub+zip")
        return path
    return write(folder / name, data)


def test_damaged_files_in_a_folder_are_skipped_with_a_warning_naming_each(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write_corpus(Path("corpus"))
    for name in CORRUPT:
        write_corrupt(Path("corpus") / "damaged", name)

    sources = [d.source for d in iter_documents(["corpus"])]

    assert sources == ["corpus/a.html", "corpus/b.docx", "corpus/c.epub", "corpus/d.pdf", "corpus/e.md"]
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(messages) == len(CORRUPT)
    for name, (_, reason) in CORRUPT.items():
        (message,) = [m for m in messages if f"corpus/damaged/{name}" in m]
        assert message.startswith("skipped") and reason in message and "\n" not in message


@pytest.mark.parametrize("name", list(CORRUPT))
def test_damaged_file_named_directly_is_a_one_line_error(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    write_corrupt(Path("."), name)
    with pytest.raises(DatagenError, match="^" + re.escape(f"{name}: {CORRUPT[name][1]}")) as exc:
        list(iter_documents([name]))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["bad.pdf", "bad.epub"])
def test_damaged_file_named_on_the_command_line_exits_with_a_one_line_error(workspace, name):
    write_corrupt(workspace, name)
    assert_one_line_error(run_cli("chunk", name, cwd=workspace), name, CORRUPT[name][1])
