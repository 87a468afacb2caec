"""Text in: reading files of every supported format, counting tokens, cutting documents into chunks, and telling
language from degenerate output."""

from datagen.text.chunking import Chunk, Chunker, DEFAULT_MAX_TOKENS, chunk_documents, chunk_id, is_cut_from
from datagen.text.degenerate import REASONS, REWRITE_MIN_LENGTH_RATIO, is_serialized_object, units, word_bag_f1
from datagen.text.ingest import Document, UnusableFile, iter_documents, iter_files, read_document, read_text
from datagen.text.sentences import AUTO, languages
from datagen.text.tokens import count_tokens

__all__ = ["AUTO", "Chunk", "Chunker", "DEFAULT_MAX_TOKENS", "Document", "REASONS", "REWRITE_MIN_LENGTH_RATIO",
           "UnusableFile", "chunk_documents", "chunk_id", "count_tokens", "is_cut_from",
           "is_serialized_object", "iter_documents", "iter_files", "languages", "read_document", "read_text",
           "units", "word_bag_f1"]
