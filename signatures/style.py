"""Signatures of the style-cloning pipeline."""

import dspy


class RephraseAsGeneric(dspy.Signature):
    """Rewrite the passage in plain, neutral, modern prose, as a clear encyclopedic summary-writer would.

    Keep every event, fact, name and line of dialogue content, in the same order, and about the same length.
    Remove the author's voice: no distinctive vocabulary, archaic or regional words, asides to the reader,
    unusual punctuation or sentence rhythm. Do not add anything that is not in the passage."""

    passage: str = dspy.InputField(desc="a passage written in a distinctive authorial style")
    generic: str = dspy.OutputField(desc="the same content in plain, generic modern prose")
