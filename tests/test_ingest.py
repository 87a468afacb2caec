"""datagen.text.ingest: files and folders in, decoded documents out."""

import logging
import os
from pathlib import Path

import pytest

from datagen.errors import DatagenError
from datagen.text.ingest import Document, UnusableFile, iter_documents, read_text

LOGGER = "datagen.text.ingest"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def warnings_text(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# --- folders: what is found, in which order -------------------------------------------------------------------


def test_folder_is_searched_recursively_for_text_files_in_a_stable_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = Path("corpus")
    # Created in an order unlike the expected one, so the order cannot come from creation time.
    write(corpus / "sub" / "deeper" / "d.md", "d\n")
    write(corpus / "sub" / "c.txt", "c\n")
    write(corpus / "b.txt", "b\n")
    write(corpus / "a.md", "a\n")
    write(corpus / "alpha" / "x.txt", "x\n")
    write(corpus / "notes.markdown", "n\n")
    write(corpus / "UPPER.TXT", "u\n")
    # Ignored: other suffixes, no suffix, hidden files, hidden folders (at any depth).
    write(corpus / "image.png", b"\x89PNG\r\n\x1a\n")
    write(corpus / "data.csv", "a,b\n")
    write(corpus / "sub" / "README", "no suffix\n")
    write(corpus / ".hidden.txt", "hidden\n")
    write(corpus / ".git" / "config.txt", "hidden folder\n")
    write(corpus / "sub" / ".cache" / "e.md", "hidden nested folder\n")

    docs = list(iter_documents([corpus]))

    # Files of a folder in sorted (code point) order, then its subfolders in sorted order, depth first.
    assert [d.source for d in docs] == [
        "corpus/UPPER.TXT",
        "corpus/a.md",
        "corpus/b.txt",
        "corpus/notes.markdown",
        "corpus/alpha/x.txt",
        "corpus/sub/c.txt",
        "corpus/sub/deeper/d.md",
    ]
    assert [d.text for d in docs] == ["u\n", "a\n", "b\n", "n\n", "x\n", "c\n", "d\n"]
    assert all(isinstance(d, Document) for d in docs)
    # Deterministic: a second run gives the same documents.
    assert list(iter_documents([corpus])) == docs


def test_source_is_relative_to_cwd_and_absolute_outside_it(tmp_path, monkeypatch):
    inside = write(tmp_path / "work" / "in.txt", "inside\n")
    outside = write(tmp_path / "elsewhere" / "out.txt", "outside\n")
    monkeypatch.chdir(tmp_path / "work")

    docs = list(iter_documents(["in.txt", str(outside)]))

    assert docs == [Document("in.txt", "inside\n"), Document(outside.resolve().as_posix(), "outside\n")]
    assert inside.exists()


def test_files_and_folders_can_be_mixed_and_keep_the_given_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "z.txt", "z\n")
    write(tmp_path / "dir" / "a.txt", "a\n")

    docs = list(iter_documents(["z.txt", "dir"]))

    assert [d.source for d in docs] == ["z.txt", "dir/a.txt"]


# --- errors for what the user named --------------------------------------------------------------------------


def test_missing_path_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatagenError, match=r"nope/missing\.txt: no such file or folder") as exc:
        list(iter_documents(["nope/missing.txt"]))
    assert "\n" not in str(exc.value)


def test_missing_path_after_a_good_one_is_still_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "good.txt", "good\n")
    with pytest.raises(DatagenError, match="ghost"):
        list(iter_documents(["good.txt", "ghost"]))


def test_folder_without_text_files_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatagenError, match=r"^empty: folder holds no text files") as exc:
        list(iter_documents(["empty"]))
    assert ".txt" in str(exc.value) and ".md" in str(exc.value)


def test_folder_with_only_non_text_and_hidden_files_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pics" / "a.png", b"\x89PNG")
    write(tmp_path / "pics" / ".secret.txt", "hidden\n")
    write(tmp_path / "pics" / ".hidden" / "b.md", "hidden\n")
    with pytest.raises(DatagenError, match=r"^pics: folder holds no text files"):
        list(iter_documents(["pics"]))


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n"], ids=["zero-bytes", "whitespace-only"])
def test_named_empty_file_is_an_error_naming_it(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "empty.txt", content)
    with pytest.raises(DatagenError, match=r"^empty\.txt: file is empty$"):
        list(iter_documents(["empty.txt"]))
    with pytest.raises(UnusableFile, match="empty"):
        read_text(Path("empty.txt"))


def test_named_file_with_only_a_bom_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bom.txt", b"\xef\xbb\xbf")
    with pytest.raises(DatagenError, match=r"bom\.txt: file is empty"):
        list(iter_documents(["bom.txt"]))


def test_named_binary_file_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "blob.txt", b"header\x00\x01\x02 more bytes")
    with pytest.raises(DatagenError, match=r"^blob\.txt: .*binary") as exc:
        list(iter_documents(["blob.txt"]))
    assert "NUL" in str(exc.value)
    with pytest.raises(UnusableFile, match="binary"):
        read_text(Path("blob.txt"))


def test_named_unusable_file_is_an_error_even_after_good_documents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "good.txt", "good\n")
    write(tmp_path / "empty.md", b"")
    docs = iter_documents(["good.txt", "empty.md"])
    assert next(docs) == Document("good.txt", "good\n")
    with pytest.raises(DatagenError, match=r"empty\.md: file is empty"):
        next(docs)


# --- unusable files found while walking a folder ------------------------------------------------------------


def test_unusable_files_in_a_folder_are_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    corpus = Path("corpus")
    write(corpus / "a.txt", "first\n")
    write(corpus / "b_empty.txt", b"")
    write(corpus / "c_binary.md", b"\x00\x00\x00\x01")
    write(corpus / "d.md", "last\n")

    docs = list(iter_documents([corpus]))

    assert docs == [Document("corpus/a.txt", "first\n"), Document("corpus/d.md", "last\n")]
    messages = warnings_text(caplog)
    assert len(messages) == 2
    empty_msg = next(m for m in messages if "b_empty.txt" in m)
    binary_msg = next(m for m in messages if "c_binary.md" in m)
    assert "skipped" in empty_msg and "empty" in empty_msg
    assert "skipped" in binary_msg and "binary" in binary_msg
    assert str(corpus / "b_empty.txt") in empty_msg
    assert str(corpus / "c_binary.md") in binary_msg


def test_folder_where_every_file_is_unusable_is_an_error(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "bad" / "empty.txt", b"")
    write(tmp_path / "bad" / "blob.md", b"\x00binary")

    with pytest.raises(DatagenError, match="no usable text"):
        list(iter_documents(["bad"]))
    # Each file was still reported before giving up.
    messages = warnings_text(caplog)
    assert any("empty.txt" in m for m in messages)
    assert any("blob.md" in m for m in messages)


def test_a_good_input_elsewhere_saves_a_folder_of_unusable_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad" / "empty.txt", b"")
    write(tmp_path / "good.txt", "good\n")
    assert list(iter_documents(["bad", "good.txt"])) == [Document("good.txt", "good\n")]


def test_empty_input_list_is_an_error():
    with pytest.raises(DatagenError, match="no usable text"):
        list(iter_documents([]))


def test_unreadable_file_in_a_folder_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop reading")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "corpus" / "a.txt", "readable\n")
    locked = write(tmp_path / "corpus" / "locked.txt", "secret\n")
    locked.chmod(0)
    try:
        try:
            locked.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 000 does not stop reading on this system")

        docs = list(iter_documents(["corpus"]))
    finally:
        locked.chmod(0o644)

    assert docs == [Document("corpus/a.txt", "readable\n")]
    messages = warnings_text(caplog)
    assert len(messages) == 1
    assert "corpus/locked.txt" in messages[0] and "cannot read" in messages[0]


def test_unlistable_subfolder_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop listing")
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "corpus" / "a.txt", "readable\n")
    write(tmp_path / "corpus" / "locked" / "b.txt", "hidden by permissions\n")
    locked = tmp_path / "corpus" / "locked"
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 000 does not stop listing on this system")
        docs = list(iter_documents(["corpus"]))
    finally:
        locked.chmod(0o755)

    assert docs == [Document("corpus/a.txt", "readable\n")]
    assert any("locked" in m and "cannot list" in m for m in warnings_text(caplog))


def test_unreadable_file_in_a_folder_is_skipped_with_a_warning_simulated(tmp_path, monkeypatch, caplog):
    """The same as above without needing a non-root user: reading the file raises PermissionError."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "corpus" / "a.txt", "readable\n")
    write(tmp_path / "corpus" / "locked.txt", "secret\n")
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)

    assert list(iter_documents(["corpus"])) == [Document("corpus/a.txt", "readable\n")]
    messages = warnings_text(caplog)
    assert len(messages) == 1
    assert "corpus/locked.txt" in messages[0] and "cannot read" in messages[0] and "Permission denied" in messages[0]
    # Named explicitly, the same file is an error.
    with pytest.raises(DatagenError, match=r"^corpus/locked\.txt: cannot read \(Permission denied\)$"):
        list(iter_documents(["corpus/locked.txt"]))


def test_unlistable_subfolder_is_skipped_with_a_warning_simulated(tmp_path, monkeypatch, caplog):
    """The same as above without needing a non-root user: listing the subfolder raises PermissionError."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "corpus" / "a.txt", "readable\n")
    write(tmp_path / "corpus" / "locked" / "b.txt", "hidden by permissions\n")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)

    assert list(iter_documents(["corpus"])) == [Document("corpus/a.txt", "readable\n")]
    assert any("corpus/locked" in m and "cannot list" in m for m in warnings_text(caplog))


@pytest.mark.timeout(30)
def test_symlink_loop_in_a_folder_does_not_hang_and_yields_each_file_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "corpus"
    write(folder / "a.txt", "a\n")
    write(folder / "sub" / "b.md", "b\n")
    try:
        os.symlink(folder, folder / "loop")
        os.symlink(folder, folder / "sub" / "back")
    except (OSError, NotImplementedError) as exc:  # pragma: no cover - platforms without symlinks
        pytest.skip(f"cannot create symlinks: {exc}")

    docs = list(iter_documents(["corpus"]))

    assert [d.source for d in docs] == ["corpus/a.txt", "corpus/sub/b.md"]
    assert [d.text for d in docs] == ["a\n", "b\n"]


# --- decoding ------------------------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_with_a_warning_naming_the_file(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    path = write(tmp_path / "latin1.txt", "café au lait\n".encode("latin-1"))

    text = read_text(Path("latin1.txt"))

    assert text == "caf\ufffd au lait\n"
    messages = warnings_text(caplog)
    assert len(messages) == 1
    assert "latin1.txt" in messages[0]
    assert "UTF-8" in messages[0] and "U+FFFD" in messages[0]
    assert "offset 3" in messages[0]  # b"caf" then the bad byte \xe9
    # The same through iter_documents.
    caplog.clear()
    assert list(iter_documents(["latin1.txt"])) == [Document("latin1.txt", "caf\ufffd au lait\n")]
    assert any("latin1.txt" in m for m in warnings_text(caplog))
    assert path.exists()


def test_invalid_utf8_inside_a_folder_is_kept_not_skipped(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    write(tmp_path / "corpus" / "a.txt", b"ok \xff\xfe end")
    docs = list(iter_documents(["corpus"]))
    assert docs == [Document("corpus/a.txt", "ok \ufffd\ufffd end")]
    assert any("corpus/a.txt" in m and "UTF-8" in m for m in warnings_text(caplog))


def test_invalid_utf8_offset_counts_the_bom(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    path = write(tmp_path / "bom_bad.txt", b"\xef\xbb\xbfab\xffc")  # the bad byte is at file offset 5
    assert read_text(path) == "ab\ufffdc"
    (message,) = warnings_text(caplog)
    assert "offset 5" in message


def test_utf8_bom_is_dropped(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    path = write(tmp_path / "bom.md", b"\xef\xbb\xbf# Title\nbody\n")
    text = read_text(path)
    assert text == "# Title\nbody\n"
    assert not text.startswith("\ufeff")
    assert warnings_text(caplog) == []


def test_crlf_and_lone_cr_newlines_are_preserved_exactly(tmp_path):
    raw = b"line one\r\nline two\r\n\r\nold mac\rend\n"
    path = write(tmp_path / "crlf.txt", raw)
    text = read_text(path)
    assert text == "line one\r\nline two\r\n\r\nold mac\rend\n"
    assert text.encode("utf-8") == raw
    (doc,) = iter_documents([path])
    assert doc.text == text


def test_non_ascii_utf8_round_trips(tmp_path):
    original = "Étienne’s café — 東京 🚢\n"
    path = write(tmp_path / "u.txt", original)
    assert read_text(path) == original


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf# Title\r\n\r\nThe first paragraph, \xe2\x80\x9cquoted\xe2\x80\x9d, runs on for a while here.\r\n\r\n"
    b"The second paragraph also runs on for a while.\r\nIt has two lines.\r\n",
    b"\xef\xbb\xbfA line\rold mac line end, and then some more words to fill it.\n\n"
    b"A bad \xff byte sits in the second paragraph, which runs on.\n\nThe last one.",
], ids=["bom-crlf", "bom-cr-invalid"])
def test_chunk_offsets_index_the_file_read_as_the_readme_says(tmp_path, raw):
    """The README's promise for text files: open(source, encoding="utf-8-sig", errors="replace",
    newline="").read()[start:end] == text (a BOM dropped, line ends kept as they are)."""
    from datagen.text.chunking import chunk_documents

    path = write(tmp_path / "doc.txt", raw)
    chunks = list(chunk_documents(iter_documents([path]), 16))
    assert len(chunks) >= 2
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as source:
        text = source.read()
    assert text == read_text(path)
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
    assert chunks[0].start == 0 and chunks[0].text.startswith(("# Title\r\n", "A line\rold"))
