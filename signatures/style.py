"""Signatures of the style-cloning pipeline."""

import dspy


class RephraseAsGeneric(dspy.Signature):
    """Rewrite the passage in plain, neutral, modern prose, as a clear encyclopedic summary-writer would.

    Keep every event, fact, name and line of dialogue content, in the same order, and about the same length.
    Remove the author's voice: no distinctive vocabulary, archaic or regional words, asides to the reader,
    unusual punctuation or sentence rhythm. Do not add anything that is not in the passage."""

    passage: str = dspy.InputField()
    generic: str = dspy.OutputField(desc="the same content in plain, generic modern prose")


class AddBoundaries(dspy.Signature):
    """The passage was cut out of a longer text, so it may begin or stop abruptly (a dangling reference, a reply
    to something unseen, a scene cut off). Write at most one short opening sentence to put before it and at
    most one short closing sentence to put after it, in the same author's voice, so that it reads as a
    self-contained piece. Leave a field empty when the passage already begins or ends naturally. Never repeat,
    summarise or rewrite the passage itself."""

    passage: str = dspy.InputField(desc="a passage cut from a longer text")
    opening: str = dspy.OutputField(desc="the sentence before the passage, or empty")
    closing: str = dspy.OutputField(desc="the sentence after the passage, or empty")
