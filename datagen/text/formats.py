"""Text out of formats other than plain text: PDF, EPUB, DOCX and HTML.

Each reader turns a file's bytes into text in the shape chunking expects: paragraphs separated by blank lines,
and headings (HTML's h1-h6, Word's Title and Heading styles) on lines of their own written the Markdown way
("## Title"), so a heading stays with the text under it. A reader raises whatever its parser raises on a damaged
file; ingest reports that as an unusable file. Parsers are imported on first use: most commands never need them.
"""

import io
import posixpath
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import unquote
from xml.etree import ElementTree

# Paragraph and line breaks marked inside an HTML tree before its text is taken, so that they survive the
# collapsing of the markup's own whitespace. Control characters: no document text uses them.
_PARAGRAPH = "\x1e"
_LINE = "\x1f"
# Not text a reader of the page sees.
_HTML_HIDDEN = ["head", "script", "style", "noscript", "template", "svg"]
_HTML_HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
_HTML_BLOCKS = ["address", "article", "aside", "blockquote", "body", "dd", "div", "dl", "dt", "figcaption", "figure",
                "footer", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th",
                "tr", "ul"]
_DOCX_HEADING = re.compile(r"Heading (\d)$|Title$")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# An archive (DOCX, EPUB) whose members would inflate to more than this is refused before any is inflated: a
# zip bomb of a few kilobytes can declare gigabytes. zipfile never inflates a member past its declared size.
MAX_UNZIPPED_BYTES = 256 * 2**20
_OPF = "{http://www.idpf.org/2007/opf}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"


def _assemble(paragraphs: Iterable[Iterable[str]]) -> str:
    """Paragraphs, each given as its lines, joined by blank lines: runs of whitespace inside a line become one
    space, and empty lines and paragraphs are dropped."""
    blocks = []
    for lines in paragraphs:
        if block := "\n".join(kept for line in lines if (kept := " ".join(line.split()))):
            blocks.append(block)
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _heading(level: int, title: str) -> str:
    """A heading as a one-line Markdown heading (empty for an empty title)."""
    title = " ".join(title.split())
    return f"{'#' * level} {title}" if title else ""


def html_text(markup: bytes) -> str:
    """The visible text of an HTML or XHTML page: block elements are paragraphs, <br> a line break, h1-h6
    headings; scripts, styles and the <head> are left out. The encoding is detected (BOM, declared charset)."""
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

    if b"\x00" in markup[:8192]:
        raise ValueError("it contains NUL bytes: a binary file, not a page")
    with warnings.catch_warnings():
        # Parsing XHTML as HTML is deliberate: the HTML parser also copes with pages that are not well-formed.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(markup, "lxml")
    for tag in soup.find_all(_HTML_HIDDEN):
        tag.decompose()
    for tag in soup.find_all(_HTML_HEADINGS):
        tag.replace_with(_PARAGRAPH + _heading(int(tag.name[1]), tag.get_text(" ")) + _PARAGRAPH)
    for tag in soup.find_all("br"):
        tag.replace_with(_LINE)
    for tag in soup.find_all("pre"):
        for string in tag.find_all(string=True):
            string.replace_with(string.replace("\n", _LINE))
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before(_PARAGRAPH)
        tag.insert_after(_PARAGRAPH)
    return _assemble(paragraph.split(_LINE) for paragraph in soup.get_text().split(_PARAGRAPH))


def _docx_blocks(document) -> Iterator[list[str]]:
    """The lines of each paragraph and table of a Word document's body, in order. A table row is one line, its
    cells joined by " | " (a merged cell, which python-docx repeats once per column it spans, counted once)."""
    from docx.table import Table

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            yield [" | ".join(dict.fromkeys(cell.text for cell in row.cells)) for row in block.rows]
        elif block.style is not None and (match := _DOCX_HEADING.match(block.style.name)):
            yield [_heading(int(match.group(1) or 1), block.text)]
        else:
            yield block.text.splitlines()


def _checked_zip(raw: bytes) -> zipfile.ZipFile:
    """The archive, refused when its members declare more than MAX_UNZIPPED_BYTES in all."""
    archive = zipfile.ZipFile(io.BytesIO(raw))
    if (size := sum(member.file_size for member in archive.infolist())) > MAX_UNZIPPED_BYTES:
        archive.close()
        raise ValueError(f"it would unzip to {size / 2**20:,.0f} MiB, over the {MAX_UNZIPPED_BYTES // 2**20} MiB "
                         "limit: a zip bomb or a file too large to read")
    return archive


def docx_text(raw: bytes) -> str:
    """The text of a Word document's body (headers, footers and notes are left out)."""
    import docx

    _checked_zip(raw).close()
    return _assemble(_docx_blocks(docx.Document(io.BytesIO(raw))))


def _epub_member(book: zipfile.ZipFile, name: str) -> bytes:
    try:
        return book.read(name)
    except KeyError:  # zipfile's message, quoted by KeyError, reads badly in a report
        raise ValueError(f"{name} is missing") from None


def _epub_chapters(book: zipfile.ZipFile) -> Iterator[bytes]:
    """The XHTML documents of an EPUB's spine, in reading order, without the navigation document (a table of
    contents, not the book's text)."""
    container = ElementTree.fromstring(_epub_member(book, "META-INF/container.xml"))
    rootfile = container.find(f".//{_CONTAINER}rootfile")
    if rootfile is None or not rootfile.get("full-path"):
        raise ValueError("META-INF/container.xml names no package document")
    package_path = rootfile.get("full-path")
    package = ElementTree.fromstring(_epub_member(book, package_path))
    folder = posixpath.dirname(package_path)
    manifest = {item.get("id"): item for item in package.iter(f"{_OPF}item")}
    for ref in package.iter(f"{_OPF}itemref"):
        item = manifest.get(ref.get("idref"))
        if item is None:
            raise ValueError(f"the spine names {ref.get('idref')!r}, which the manifest does not list")
        if "nav" not in (item.get("properties") or "").split():
            # An href is a URL relative to the package document.
            yield _epub_member(book, posixpath.normpath(posixpath.join(folder, unquote(item.get("href", "")))))


def epub_text(raw: bytes) -> str:
    """The text of an EPUB book: its chapters in reading order, each read as HTML."""
    with _checked_zip(raw) as book:
        chapters = [text for chapter in _epub_chapters(book) if (text := html_text(chapter))]
    return "\n".join(chapters)


def pdf_text(raw: bytes) -> str:
    """The text of a PDF, page by page, as pypdf's layout mode places it, in reading order: a page set in columns
    is read column by column (see `_reading_order`), and running headers and footers (a line at the top or
    bottom of most pages, page numbers included) are left out. A vertical gap between lines starts a paragraph;
    a PDF does not mark paragraphs, so ones set apart by a first-line indent alone stay together."""
    from pypdf import PdfReader

    pages = [page.extract_text(extraction_mode="layout").splitlines() for page in PdfReader(io.BytesIO(raw)).pages]
    running = _running_lines(pages)
    texts = ("\n".join(_reading_order([line for i, line in enumerate(lines)
                                       if i not in _edges(lines) or _line_key(line) not in running]))
             for lines in pages)
    return _assemble(block.splitlines() for text in texts for block in _BLANK_LINE.split(text))


# A running header or footer is among the first or last lines of a page with text on it.
_EDGE_LINES = 3
# ... and is on at least this share of the pages (two pages at least).
_RUNNING_SHARE = 0.6
# Columns: a gutter is at least this many blank character columns wide in layout mode's text; the lines with
# text on both sides of it have at least this many words on each side (cells of a table have fewer).
_GUTTER_CHARS = 3
_COLUMN_WORDS = 3
_SENTENCE_END = re.compile(r"[.!?…:;\"”’»)\]]$")


def _edges(lines: list[str]) -> set[int]:
    """The indexes of a page's first and last few lines with text on them."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return set(filled[:_EDGE_LINES] + filled[-_EDGE_LINES:])


def _line_key(line: str) -> str:
    """A line as running headers and footers repeat it: its numbers (the page's) and spacing aside."""
    return re.sub(r"\d+", "#", " ".join(line.split())).casefold()


def _running_lines(pages: list[list[str]]) -> set[str]:
    """The keys of lines repeated at the top or bottom of most pages: running headers, footers, page numbers."""
    counts = Counter(key for lines in pages for key in {_line_key(lines[i]) for i in _edges(lines)})
    least = max(2, _RUNNING_SHARE * len(pages))
    return {key for key, count in counts.items() if count >= least and key}


def _reading_order(lines: list[str]) -> list[str]:
    """A page's layout-mode lines in reading order. Where a gutter (a band of blank space) runs down the page with
    text in words on both sides, the lines beside it are read as columns, the left one first (the right one then
    split again, for three or more); a line across the gutter (a title over both columns, a footer) keeps its
    place, between the columns' lines above and below it."""
    gutter = _gutter(lines)
    if gutter is None:
        return lines
    start, end = gutter
    ordered: list[str] = []
    left: list[str] = []
    right: list[str] = []

    def flush() -> None:
        columns = [_trimmed(_reading_order(left)), _trimmed(_reading_order(right))]
        if columns[0] and columns[1] and _SENTENCE_END.search(columns[0][-1].rstrip()):
            columns[0].append("")  # the left column ends a sentence: the right one starts a paragraph
        ordered.extend(columns[0] + columns[1])
        left.clear()
        right.clear()

    for line in lines:
        if line[start:end].strip():
            flush()
            ordered.append(line)
        else:
            left.append(line[:start])
            right.append(line[end:])
    flush()
    return ordered


def _trimmed(lines: list[str]) -> list[str]:
    """Lines without the blank ones at either end."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return lines[filled[0]:filled[-1] + 1] if filled else []


def _gutter(lines: list[str]) -> tuple[int, int] | None:
    """The character columns [start, end) of a gutter between text columns, or None. Among the bands of columns
    that at most a fifth of the lines cross, the widest run crossed by the fewest (a long last line of a column
    reaches into a band, a title crosses it); the lines beside it must have several words on both sides (at
    least three of them, and a fifth of those that do not cross it)."""
    filled = [line for line in lines if line.strip()]
    width = max(map(len, filled), default=0)
    crossing = [sum(1 for line in filled if c < len(line) and not line[c].isspace()) for c in range(width)]
    candidates = []
    for start, end in _runs(range(width), lambda c: crossing[c] * 5 <= len(filled)):
        fewest = min(crossing[start:end])
        runs = _runs(range(start, end), lambda c: crossing[c] == fewest)
        inner = max(runs, key=lambda run: run[1] - run[0])
        if start > 0 and end < width and inner[1] - inner[0] >= _GUTTER_CHARS:
            candidates.append((fewest, inner[0] - inner[1], inner))
    if not candidates:
        return None
    start, end = min(candidates)[2]
    beside = [line for line in filled if not line[start:end].strip()]
    both = [line for line in beside if len(line[:start].split()) >= _COLUMN_WORDS
            and len(line[end:].split()) >= _COLUMN_WORDS]
    return (start, end) if len(both) >= 3 and len(both) * 5 >= len(beside) else None


def _runs(indexes: range, keep) -> list[tuple[int, int]]:
    """The maximal runs [start, end) of consecutive indexes for which `keep` holds."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if not keep(i):
            continue
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


# File suffix (lower case) -> reader. Files with other suffixes are read as plain text.
READERS: dict[str, Callable[[bytes], str]] = {
    ".pdf": pdf_text,
    ".epub": epub_text,
    ".docx": docx_text,
    ".html": html_text,
    ".htm": html_text,
    ".xhtml": html_text,
}
