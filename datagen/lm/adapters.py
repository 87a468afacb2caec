"""DSPy adapters that read a model's answer strictly, for every pipeline: whatever an answer holds besides its
fields (a reasoning model's thinking, field markers out of place, text that is not valid Unicode) never reaches a
field's value. An answer with no clean reading fails to parse, as DSPy's own unreadable answers do.

- Reasoning up to a closing tag (`</think>`, `</thinking>`, `</reasoning>`, ... with or without the opening tag)
  is dropped before parsing; the call log keeps the answer whole. Reasoning left open, a reasoning tag after the
  answer, a field given twice (a draft and the answer, say) or a value holding a reasoning tag or a field marker
  fails to parse.
- `[[ ## field ## ]]` markers are read wherever they stand: indented, on the line of a value, spaced differently.
- A lone surrogate (a `\\ud83d` escape, valid JSON but not Unicode) fails the call with `InvalidText`: stored
  text must be valid UTF-8, and a half emoji is no training text.
- A `str` field given a JSON object or array, or a Python dict/list repr (the JSONAdapter's parsed value is a dict
  or list, which DSPy would turn into its repr), fails to parse: it is data, not the text the field asks for.
  Fields of other types (list[str], bool, pydantic models) take such values as before.
"""

import json
import re
import sys
import textwrap
import weakref

import dspy
from dspy.adapters.types.tool import ToolCalls
from dspy.adapters.utils import get_annotation_name
from dspy.utils.exceptions import AdapterParseError

from datagen.lm.errors import BatchRequestError, Deferred, causes
from datagen.text.degenerate import is_serialized_object

_TAG_NAMES = r"think|thinking|thought|thoughts|reasoning|reason|reflection|scratchpad"
# The end of a reasoning block: a closing tag, or the `<|end_of_thought|>` style some models write.
_REASONING_END = re.compile(rf"</\s*(?:{_TAG_NAMES})\s*>|<\|end_of_(?:thought|reasoning)\|>", re.I)
_REASONING_TAG = re.compile(rf"</?\s*(?:{_TAG_NAMES})\s*>|<\|(?:begin|end)_of_(?:thought|reasoning)\|>", re.I)
# A field marker, however spaced, and whatever stands around it on its line.
_MARKER = re.compile(r"[ \t]*\[\[ *## *(\w+) *## *\]\][ \t]*")
_MARKER_PIECE = re.compile(r"\[ *##|## *\]")  # `[[ ## x ## ]]`, `[ ## completed ## ]`, a marker cut short
_SURROGATE = re.compile("[\ud800-\udfff]")
# DSPy's field list says "(str)" of every text field and ends an undescribed field's line with ": ".
_STR_TYPE = re.compile(r"^(\d+\. `\w+`) \(str\)", re.M)
_NO_DESCRIPTION = re.compile(r"^(\d+\. `\w+`(?: \([^)\n]*\))?): *$", re.M)


class InvalidText(ValueError):
    """A model's answer that is not valid Unicode (a lone surrogate); `lm_response` is the answer with U+FFFD in
    its place."""

    def __init__(self, completion: str):
        at = _SURROGATE.search(completion)
        self.lm_response = valid_text(completion)
        super().__init__(f"the model's answer is not valid Unicode: a lone surrogate U+{ord(at.group()):04X} at "
                         f"character {at.start()} (half of a character the server split)")


def valid_text(text: str | None) -> str | None:
    """`text` with each lone surrogate replaced by U+FFFD, so that it can be stored and written as UTF-8."""
    return text if text is None else _SURROGATE.sub("\ufffd", text)


def valid_values(value):
    """`value` with `valid_text` applied to every string in it (in lists and dicts, at any depth)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {key: valid_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [valid_values(item) for item in value]
    return value


def holds_invalid_text(value) -> bool:
    """Whether any text in `value` (strings in lists and dicts, at any depth) holds a lone surrogate."""
    return bool(_SURROGATE.search(json.dumps(value, ensure_ascii=False, default=str)))


def without_reasoning(completion: str) -> str:
    """The answer after the last closing reasoning tag (all of it when there is none)."""
    ends = list(_REASONING_END.finditer(completion))
    return completion[ends[-1].end():] if ends else completion


class _Strict:
    """Parsing shared by both adapters: reasoning dropped first, the values checked after."""

    def parse(self, signature, completion: str) -> dict:
        if _SURROGATE.search(completion):
            raise InvalidText(completion)
        answer = without_reasoning(completion)
        if _REASONING_TAG.search(answer):
            raise self._unclean(signature, completion, "its reasoning is left open (no closing tag ends it)")
        if problem := self._layout_problem(signature, answer):
            raise self._unclean(signature, completion, problem)
        try:
            fields = super().parse(signature, self._prepare(answer))
        except AdapterParseError as exc:
            exc.lm_response = completion  # the answer as the model gave it, for the run store
            raise
        values = json.dumps(fields, ensure_ascii=False, default=str)
        if _REASONING_TAG.search(values) or _MARKER_PIECE.search(values):
            raise self._unclean(signature, completion, "a value holds a reasoning tag or a field marker")
        for name, value in fields.items():
            if signature.output_fields[name].annotation is str and is_serialized_object(value):
                raise self._unclean(signature, completion, f"the text field {name} holds a JSON object or list")
        return fields

    def _unclean(self, signature, completion: str, problem: str) -> AdapterParseError:
        return AdapterParseError(type(self).__name__, signature, completion, message=problem)

    def _prepare(self, answer: str) -> str:
        return answer

    def _layout_problem(self, signature, answer: str) -> str | None:
        return None


# {signature class: {(adapter class, instructions, fields): system message}}: kept while the signature lives.
_SYSTEM_MESSAGES: "weakref.WeakKeyDictionary[type, dict]" = weakref.WeakKeyDictionary()


class ChatAdapter(_Strict, dspy.ChatAdapter):
    """dspy.ChatAdapter reading field markers wherever they stand, and falling back to our JSONAdapter.

    Its prompt is DSPy's with the tokens that buy nothing cut (bench/prompt_tokens.py measures them): a text field's
    "(str)" and an undescribed field's ": " in the field list, the eight spaces DSPy puts before each line of the
    instructions, and the reminder at the end of each input message, which repeats the system message's layout
    (types included) and is sent with every call after the input, where no prefix cache serves it: it names the
    fields in order and the type of each that is not text. Markers, layout and parsing are DSPy's."""

    def format_system_message(self, signature) -> str:
        """DSPy's system message, made once for a signature as it stands (its instructions, its fields' names,
        types, descriptions and prefixes, even when edited in place) and this adapter's class: DSPy makes it again
        at every call (each field's placeholder through a pydantic TypeAdapter), 50-120 us, a few percent of a
        run's CPU on its event loop (py-spy, bench/README.md). A subclass whose system message also depends on
        the instance's own settings overrides this."""
        key = (type(self), signature.instructions,
               tuple((name, field.annotation, repr(field.json_schema_extra))
                     for name, field in signature.model_fields.items()))
        made = _SYSTEM_MESSAGES.setdefault(signature, {})
        if (message := made.get(key)) is None:
            message = made[key] = super().format_system_message(signature)
        return message

    def format_field_description(self, signature) -> str:
        described = super().format_field_description(signature)
        return _NO_DESCRIPTION.sub(r"\1", _STR_TYPE.sub(r"\1", described))

    def format_task_description(self, signature) -> str:
        instructions = textwrap.dedent(signature.instructions).strip()
        return f"In adhering to this structure, your objective is:\n{instructions}"

    def user_message_output_requirements(self, signature) -> str:
        if any(field.annotation is ToolCalls for field in signature.output_fields.values()):
            return super().user_message_output_requirements(signature)
        named = ", ".join(f"`[[ ## {name} ## ]]`" + ("" if field.annotation is str else
                                                     f" ({get_annotation_name(field.annotation)})")
                          for name, field in signature.output_fields.items())
        return f"Respond with the output fields {named}, then `[[ ## completed ## ]]`."

    def _prepare(self, answer: str) -> str:
        # Each marker on a line of its own, unindented: DSPy's parse only knows a marker that starts its line
        # (an indented one left its `]]` in the value) and keeps whatever follows a value on its line.
        return _MARKER.sub(lambda m: f"\n[[ ## {m.group(1)} ## ]]\n", answer)

    def _layout_problem(self, signature, answer: str) -> str | None:
        names = [name for name in _MARKER.findall(answer) if name in signature.output_fields]
        twice = sorted({name for name in names if names.count(name) > 1})
        return f"it gives the field {twice[0]} more than once (a draft and the answer?)" if twice else None

    def _make_json_adapter_fallback(self):
        # Called by dspy.ChatAdapter in the `except` block of the call that failed. A batch run's request that is not
        # answered yet (Deferred) or that its job failed (BatchRequestError) is no unparseable answer: it goes on
        # unchanged, never as a second request in JSON (DSPy 3.4 falls back on AdapterParseError alone; this holds
        # should it widen that).
        if any(isinstance(cause, Deferred | BatchRequestError) for cause in causes(sys.exc_info()[1])):
            return _Reraise(sys.exc_info()[1])
        return JSONAdapter(use_native_function_calling=self.use_native_function_calling,
                           parallel_tool_calls=self.parallel_tool_calls)


class _Reraise:
    """A stand-in for the fallback adapter that raises the error the first adapter's call raised, as it is."""

    def __init__(self, error: BaseException):
        self.error = error

    def __call__(self, *args, **kwargs):
        raise self.error

    async def acall(self, *args, **kwargs):
        raise self.error


class JSONAdapter(_Strict, dspy.JSONAdapter):
    """dspy.JSONAdapter with the same checks: reasoning dropped before the JSON is read, values checked."""


def _description(name: str, field) -> str:
    described = field.json_schema_extra.get("desc") or ""
    # A field declared without desc gets DSPy's stand-in, "${name}": another template to copy.
    return name.replace("_", " ") if not described or described.startswith("${") else described


class DescribedJSONAdapter(JSONAdapter):
    """Our JSONAdapter, whose system message describes the fields in words instead of showing a template of them.

    DSPy's adapters show the layout as a template, `[[ ## passage ## ]]` then `{passage}`, and `{"generic":
    "{generic}"}`; a tiny model copies it, answering `{passage}` or `{{}}` for the rewrite. This one says where the
    inputs stand and which keys the JSON answer has, and what each holds, with no stand-in to copy. Demos, inputs
    and the parsing are JSONAdapter's. For the embedded models (datagen.lm.local), whose grammar enforces the
    JSON: measured by `python -m bench.embedded_models` (docs/models.md)."""

    def format_field_structure(self, signature) -> str:
        inputs = ", ".join(f"[[ ## {name} ## ]]" for name in signature.input_fields)
        keys = "\n".join(f'- "{name}": {_description(name, field)}' for name, field in signature.output_fields.items())
        return (f"The user's message gives each input after its marker ({inputs}). Answer with a JSON object with "
                f"these keys:\n{keys}")
