import random
import re

import pytest
import regex

from datagen.text.chunking import Chunker, chunk_documents, chunk_id, is_cut_from
from datagen.text.ingest import Document, read_text
from datagen.text.tokens import count_tokens

from .conftest import SAMPLES

SAMPLE = SAMPLES / "lighthouse_keeper.md"
WORDS = "keeper lamp sea gale bell ship reef tide rope oil wick glass storm gull fog".split()


def synthetic_text(seed: int, paragraphs: int = 30) -> str:
    """Paragraphs of sentences that each end in ".", "!" or "?" (no word pysbd reads as an abbreviation)."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 12)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
            words[0] = words[0].capitalize()
            if rng.random() < 0.2:
                words.insert(1, "— “Étienne’s café”,")
            sentences.append(" ".join(words) + rng.choice(".!?"))
        out.append(" ".join(sentences))
    return "\n\n".join(out) + "\n"


@pytest.mark.parametrize("budget", [32, 64, 200, 512])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offsets_recover_text_and_budget_is_respected(seed, budget):
    text = synthetic_text(seed)
    chunks = list(Chunker(budget).chunks(Document("s.txt", text)))
    assert chunks
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.tokens == count_tokens(c.text) <= budget
    # Chunks are in order, do not overlap, and together cover every non-space character.
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
    covered = "".join(c.text for c in chunks)
    assert re.sub(r"\s", "", covered) == re.sub(r"\s", "", text)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_mid_sentence_break_when_sentences_fit(seed):
    text = synthetic_text(seed)
    longest_sentence = max(count_tokens(s) for s in re.findall(r"[^.!?]+[.!?]", text))
    budget = max(longest_sentence, 40)
    for c in Chunker(budget).chunks(Document("s.txt", text)):
        assert c.text[-1] in ".!?", f"chunk ends mid-sentence: {c.text[-40:]!r}"
        assert c.text[0].isupper(), f"chunk starts mid-sentence: {c.text[:40]!r}"


def test_paragraph_boundaries_are_preferred_over_sentence_boundaries():
    paragraphs = ["One short paragraph here. It has two sentences.", "Second paragraph, also short.",
                  "Third one. With two."]
    text = "\n\n".join(paragraphs)
    budget = count_tokens("\n\n".join(paragraphs[:2])) + 1
    chunks = list(Chunker(budget).chunks(Document("p.txt", text)))
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[:2]), paragraphs[2]]


def test_sentence_longer_than_budget_is_cut_at_spaces():
    sentence = " ".join(f"word{i}" for i in range(400)) + "."
    chunks = list(Chunker(50).chunks(Document("long.txt", sentence)))
    assert len(chunks) > 1
    assert all(c.tokens <= 50 for c in chunks)
    assert all(re.fullmatch(r"(word\d+ )*word\d+\.?", c.text) for c in chunks)


def test_unbroken_text_longer_than_budget_is_cut_anywhere():
    text = "é" * 3000
    chunks = list(Chunker(40).chunks(Document("x.txt", text)))
    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens <= 40 for c in chunks)


def test_markdown_heading_never_ends_a_chunk():
    text = read_text(SAMPLE)
    chunks = list(Chunker(300).chunks(Document("s.md", text)))
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) >= 3
    for c in chunks:
        assert not c.text.splitlines()[-1].startswith("#")
    assert sum(c.text.count("\n#") + c.text.startswith("#") for c in chunks) == len(headings)


def test_ids_are_content_hashes_and_stable():
    text = synthetic_text(7)
    first = [c.id for c in Chunker(128).chunks(Document("a.txt", text))]
    again = [c.id for c in Chunker(128).chunks(Document("elsewhere/b.txt", text))]
    assert first == again
    assert len(set(first)) == len(first)
    assert first[0] == chunk_id(next(Chunker(128).chunks(Document("a.txt", text))).text)


def test_repeated_passages_are_dropped_across_documents(caplog):
    text = synthetic_text(5, paragraphs=3)
    chunks = list(chunk_documents([Document("a.txt", text), Document("b.txt", text)], 512))
    assert [c.source for c in chunks] == ["a.txt"] * len(chunks)
    assert "repeats an earlier chunk" in caplog.text


def test_unicode_and_crlf_survive_exactly(tmp_path):
    text = "“Curly quotes” — em dash, naïve café, Ünïcödé.\r\n\r\nSecond paragraph: ‘single’ quotes…\r\n"
    path = tmp_path / "u.txt"
    path.write_bytes(text.encode("utf-8"))
    decoded = read_text(path)
    chunks = list(Chunker(20).chunks(Document("u.txt", decoded)))
    assert decoded == text
    assert [c.text for c in chunks] == ["“Curly quotes” — em dash, naïve café, Ünïcödé.",
                                        "Second paragraph: ‘single’ quotes…"]
    for c in chunks:
        assert decoded[c.start:c.end] == c.text


def test_sample_corpus_chunks_at_default_budget():
    text = read_text(SAMPLE)
    chunks = list(Chunker().chunks(Document("s.md", text)))
    assert 4 <= len(chunks) <= 20
    assert all(c.tokens <= 512 for c in chunks)


# --- sentence ends of every script -----------------------------------------------------------------------------

# Words of each script (none holding a sentence end) and the marks its sentences end with. "sep" joins sentences.
SCRIPTS = {
    "hindi": ("दीपक समुद्र रात हवा नाव रस्सी तेल खिड़की तूफ़ान रखवाला सीढ़ी चाय किनारा", "।", " "),
    "bengali": ("বাতিঘর সমুদ্র রাত বাতাস নৌকা দড়ি তেল জানালা ঝড় রক্ষক সিঁড়ি চা", "।", " "),
    "marathi": ("दिवा समुद्र रात्र वारा होडी दोर तेल खिडकी वादळ रखवालदार जिना चहा", ".?", " "),
    "arabic": ("المنارة البحر الليل الريح القارب الحبل الزيت النافذة العاصفة الحارس، الدرج الشاي", ".؟!", " "),
    "urdu": ("چراغ سمندر رات ہوا کشتی رسی تیل کھڑکی طوفان محافظ، سیڑھی چائے", "۔؟", " "),
    "persian": ("فانوس دریا شب باد قایق طناب روغن پنجره طوفان نگهبان، پله چای", ".؟", " "),
    "armenian": ("փարոս ծով գիշեր քամի նավակ պարան յուղ պատուհան փոթորիկ պահապան, աստիճան թեյ", "։", " "),
    "amharic": ("መብራት ባህር ሌሊት ነፋስ ጀልባ ገመድ ዘይት መስኮት ማዕበል ጠባቂ፣ ደረጃ ሻይ", "።፧", " "),
    "greek": ("φάρος θάλασσα νύχτα άνεμος βάρκα σχοινί λάδι παράθυρο καταιγίδα φύλακας, σκάλα τσάι", ".;", " "),
    "russian": ("маяк море ночь ветер лодка верёвка масло окно буря смотритель, лестница чай", ".?!", " "),
    "burmese": ("မီးပြတိုက် ပင်လယ် ည လေ လှေ ကြိုး ဆီ ပြတင်းပေါက် မုန်တိုင်း စောင့်", "။", " "),
    "khmer": ("ប្រទីប សមុទ្រ យប់ ខ្យល់ ទូក ខ្សែ ប្រេង បង្អួច ព្យុះ អ្នកយាម", "។៚", " "),
    "chinese": ("灯塔 大海 夜晚 风 小船 绳子 灯油 窗户 暴风雨 看守人，楼梯 热茶", "。！？", ""),
    "japanese": ("灯台 海 夜 風 小舟 綱 油 窓 嵐 番人、階段 お茶", "。", ""),
}


def script_text(script: str | tuple[str, str, str], seed: int, sentences: int = 40,
                words: tuple[int, int] = (6, 30)) -> tuple[str, set]:
    """A paragraph of sentences in `script` (a name in SCRIPTS, or its words, ends and separator), and the offsets
    where its sentences start and end."""
    vocab, ends, sep = SCRIPTS[script] if isinstance(script, str) else script
    vocab = vocab.split()
    rng = random.Random(seed)
    text, bounds = "", {0}
    for _ in range(sentences):
        sentence = (sep or "").join(rng.choice(vocab) for _ in range(rng.randint(*words))).rstrip("،,、，፣")
        end = rng.choice(ends)
        text += ("" if not text else sep) + sentence + end
        bounds |= {len(text) - len(sentence) - len(end), len(text)}
    return text, bounds


def longest_sentence(text: str, bounds: set) -> int:
    """Tokens of the longest sentence of a text `script_text` made."""
    cuts = sorted(bounds)
    return max(count_tokens(text[a:b]) for a, b in zip(cuts, cuts[1:]))


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_every_script_is_cut_at_sentence_ends(script, seed):
    text, bounds = script_text(script, seed)
    longest = longest_sentence(text, bounds)
    for budget in (longest, longest + 25, 3 * longest):
        chunks = list(Chunker(budget).chunks(Document("s.txt", text)))
        assert len(chunks) > 1
        for c in chunks:
            assert c.tokens <= budget
            assert c.start in bounds and c.end in bounds, f"{script} cut mid-sentence: {c.text[-30:]!r}"


@pytest.mark.parametrize("language", ["auto", "el"])
def test_greek_question_mark_ends_a_sentence(language):
    text, bounds = script_text("greek", 3)
    for c in Chunker(longest_sentence(text, bounds), language=language).chunks(Document("el.txt", text)):
        assert c.start in bounds and c.end in bounds


def test_a_comma_or_colon_never_ends_a_sentence():
    # pysbd's Arabic rules end a sentence at '،' and ':': a cut there would be mid-sentence.
    clause = "ذهب الحارس إلى المنارة في المساء البارد"
    sentence = "، ".join([clause] * 3) + ": " + clause + "."
    text = " ".join([sentence] * 6)
    budget = count_tokens(sentence) + 5
    for c in Chunker(budget).chunks(Document("ar.txt", text)):
        assert c.text.endswith(".") and c.text.startswith("ذهب")


# Marks Unicode files under Terminal_Punctuation but not Sentence_Terminal that end a sentence, a verse or a section
# in their script, with a range of that script's code points whose letters make the words of the test's sentences
# (made up, in the historic scripts). Every other such mark is a comma, semicolon, colon or word separator.
TERMINAL_ENDS = {
    "greek": ("\N{GREEK QUESTION MARK}", "α-ω"),
    "hebrew": ("\N{HEBREW PUNCTUATION SOF PASUQ}", "א-ת"),
    "samaritan": ("\u0833\u0834\u0835\u0838\u083a\u083b\u083c", "\u0800-\u0815"),
    "mandaic": ("\N{MANDAIC PUNCTUATION}", "\u0840-\u0858"),
    "thai": ("\N{THAI CHARACTER ANGKHANKHU}\N{THAI CHARACTER KHOMUT}", "ก-ฮ"),
    "tibetan": ("\u0f08\u0f0d\u0f0e\u0f0f\u0f10\u0f11\u0f12", "\u0f40-\u0f6a"),
    "khmer": ("\N{KHMER SIGN KOOMUUT}", "\u1780-\u17a2"),
    "mongolian": ("\N{MONGOLIAN FOUR DOTS}", "\u1820-\u1842"),
    "cornish": ("\N{CORNISH VERSE DIVIDER}", "a-z"),
    "tai viet": ("\N{TAI VIET SYMBOL KOI KOI}", "\uaa80-\uaaaf"),
    "imperial aramaic": ("\N{IMPERIAL ARAMAIC SECTION SIGN}", "\U00010840-\U00010855"),
    "manichaean": ("\U00010af0\U00010af1\U00010af2\U00010af3", "\U00010ac0-\U00010ae4"),
    "avestan": ("\U00010b3c\U00010b3d\U00010b3e\U00010b3f", "\U00010b00-\U00010b35"),
    "psalter pahlavi": ("\U00010b99\U00010b9a\U00010b9b\U00010b9c", "\U00010b80-\U00010b91"),
    "soyombo": ("\N{SOYOMBO TERMINAL MARK-1}\N{SOYOMBO TERMINAL MARK-2}", "\U00011a50-\U00011a83"),
    "marchen": ("\N{MARCHEN MARK SHAD}", "\U00011c72-\U00011c8f"),
}
_CODE_POINTS = "".join(map(chr, [*range(0xD800), *range(0xE000, 0x110000)]))
TERMINAL_ONLY = regex.findall(r"[\p{Terminal_Punctuation}--\p{Sentence_Terminal}]", _CODE_POINTS, flags=regex.V1)


def made_up_text(letters: str, ends: str, seed: int) -> tuple[str, set]:
    """A paragraph of made-up words of `letters` (a regex range), its sentences ending in `ends`, and the offsets
    where its sentences start and end."""
    alphabet = regex.findall(rf"[{letters}&&\p{{L}}]", _CODE_POINTS, flags=regex.V1)
    rng = random.Random(seed)
    vocab = " ".join("".join(rng.choices(alphabet, k=rng.randint(2, 5))) for _ in range(30))
    return script_text((vocab, ends, " "), seed, sentences=30, words=(4, 14))


@pytest.mark.parametrize("script", list(TERMINAL_ENDS))
def test_the_sentence_ends_unicode_files_as_terminal_punctuation_end_sentences(script):
    ends, letters = TERMINAL_ENDS[script]
    text, bounds = made_up_text(letters, ends, seed=len(script))
    longest = longest_sentence(text, bounds)
    for budget in (longest, 3 * longest):
        chunks = list(Chunker(budget).chunks(Document("s.txt", text)))
        assert len(chunks) > 1
        for c in chunks:
            assert c.start in bounds and c.end in bounds, f"{script} cut mid-sentence: {c.text[-30:]!r}"


@pytest.mark.parametrize("mark", sorted(set(TERMINAL_ONLY) - set("".join(e for e, _ in TERMINAL_ENDS.values()))))
def test_the_rest_of_terminal_punctuation_never_ends_a_sentence(mark):
    # Commas, semicolons, colons and word separators: ',', '、', 'ETHIOPIC COMMA', 'RUNIC SINGLE PUNCTUATION', ...
    sentence = f"Keeper{mark} lamp sea gale{mark} bell ship reef tide rope oil wick glass storm gull fog."
    text = " ".join([sentence] * 6)
    # Room for a sentence and the next one's first clauses (had they been cut off at the mark), not for two.
    for c in Chunker(2 * count_tokens(sentence) - 3).chunks(Document("s.txt", text)):
        assert c.text.startswith("Keeper") and c.text.endswith("fog."), f"cut at {mark!r}: {c.text!r}"


# Tibetan as it is written: a shad after a clause or sentence, then a space; after 'ང' a tsheg before it, after 'ག'
# a space; a sentence's end doubled ('། །', the next sentence written right after it), or the double shad as one
# mark, or two shads run together at a chapter's end.
TIBETAN = ["ལྷ་ས་ནི་བོད་ཀྱི་རྒྱལ་ས་ཡིན། ", "ཁོང་ལྷ་སར་ཕེབས་སོང་། ", "བོད་ལ་རི་མཐོན་པོ་མང་པོ་ཡོད། ",
           "དེ་ནི་བྱང་ཆུབ་སེམས་དཔའི་སྤྱོད་པ་ཞེས་བྱ་བ་ཡིན་ནོ། །", "ཆོས་ཐམས་ཅད་མི་རྟག་པ་ཡིན་ནོ༎ ",
           "ཁོང་ཚོ་ཉིན་རེ་བཞིན་ཇ་འཐུང་གི་ཡོད། ", "བཀྲ་ཤིས་བདེ་ལེགས་ཕུན་སུམ་ཚོགས་པར་ཤོག །", "སྐབས་དང་པོ་རྫོགས་སོ།། "]


@pytest.mark.parametrize("seed", [1, 2])
def test_tibetan_is_cut_at_its_shads(seed):
    rng = random.Random(seed)
    text, bounds = "༄༅། །", {0, 5}
    for sentence in rng.choices(TIBETAN, k=40):
        text += sentence
        bounds |= {len(text) - len(sentence), len(text.rstrip())}
    text = text.rstrip()
    longest = longest_sentence(text, bounds)
    for budget in (longest, longest + 25, 3 * longest):
        chunks = list(Chunker(budget).chunks(Document("bo.txt", text)))
        assert len(chunks) > 1
        for c in chunks:
            assert c.start in bounds and c.end in bounds, f"cut mid-sentence: {c.text[:12]!r}...{c.text[-12:]!r}"


def test_a_tibetan_paragraph_longer_than_the_sentence_splitters_window_is_cut_at_its_shads():
    import datagen.text.sentences as sentences

    sentence = TIBETAN[3]  # ends in '། །', the next sentence right after it
    text = sentence * (sentences.SENTENCE_WINDOW_CHARS // len(sentence) + 50)
    for c in Chunker(count_tokens(sentence)).chunks(Document("bo.txt", text)):
        assert c.text == sentence, f"cut mid-sentence: {c.text[:12]!r}...{c.text[-12:]!r}"


def test_hebrew_verses_end_at_sof_pasuq():
    verses = ["בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ׃",
              "וְהָאָרֶץ הָיְתָה תֹהוּ וָבֹהוּ וְחֹשֶׁךְ עַל־פְּנֵי תְהוֹם וְרוּחַ אֱלֹהִים מְרַחֶפֶת עַל־פְּנֵי הַמָּיִם׃",
              "וַיֹּאמֶר אֱלֹהִים יְהִי אוֹר וַיְהִי־אוֹר׃",
              "וַיַּרְא אֱלֹהִים אֶת־הָאוֹר כִּי־טוֹב וַיַּבְדֵּל אֱלֹהִים בֵּין הָאוֹר וּבֵין הַחֹשֶׁךְ׃",
              "וַיִּקְרָא אֱלֹהִים לָאוֹר יוֹם וְלַחֹשֶׁךְ קָרָא לָיְלָה וַיְהִי־עֶרֶב וַיְהִי־בֹקֶר יוֹם אֶחָד׃"]
    text = " ".join(verses * 3)
    for budget in (max(map(count_tokens, verses)), count_tokens(" ".join(verses[:2])) + 3):
        for c in Chunker(budget).chunks(Document("he.txt", text)):
            assert c.text.startswith(tuple(v.split()[0] for v in verses)) and c.text.endswith("׃"), c.text


def test_old_thai_is_cut_after_its_angkhankhu():
    phrases = ["ผู้ดูแลประภาคารปีนบันไดทุกเย็นเพื่อจุดตะเกียง", "ลมทะเลในฤดูหนาวหนาวมาก", "เขาจึงนำชาร้อนไปด้วยเสมอ"]
    rng = random.Random(3)
    stanzas = [" ".join(rng.choices(phrases, k=rng.randint(2, 4))) + "๚ะ" for _ in range(12)]
    text = " ".join(stanzas) + "๛"
    for c in Chunker(max(map(count_tokens, stanzas)) + 2).chunks(Document("th.txt", text)):
        assert c.text.startswith(tuple(phrases)) and c.text.endswith(("๚ะ", "๚ะ๛")), c.text


def test_thai_is_cut_between_sentences_at_spaces():
    sentences = ["ผู้ดูแลประภาคารปีนบันไดทุกเย็นเพื่อจุดตะเกียง", "ลมทะเลในฤดูหนาวหนาวมาก", "เขาจึงนำชาร้อนไปด้วยเสมอ"]
    text = " ".join(sentences * 5)
    chunks = list(Chunker(40).chunks(Document("th.txt", text)))
    assert len(chunks) > 1
    for c in chunks:
        assert all(part in sentences for part in c.text.split(" "))


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        Chunker(100, language="xx")


# --- Markdown structure ----------------------------------------------------------------------------------------

STACKED = """# 2 The tower

Some words about the tower before its parts are described in turn, at a length that fills a line or two.

## 2.1 Building
### 2.1.1 The lens

{body}

## 2.2 Keeping

### 2.2.1 The lamp

#### 2.2.1.1 Oil

{body}

The lamp
========

{body}
"""


@pytest.mark.parametrize("budget", [40, 60, 80, 100, 150])
def test_a_run_of_headings_moves_with_the_text_under_it(budget):
    body = synthetic_text(4, paragraphs=1).strip()
    text = STACKED.format(body=body)
    chunks = list(Chunker(budget).chunks(Document("s.md", text)))
    for c in chunks:
        lines = [line for line in c.text.splitlines() if line.strip()]
        assert not lines[-1].startswith("#") and not set(lines[-1]) <= {"="}, f"ends in a heading: {c.text!r}"
    assert "".join(c.text for c in chunks).count("#") == text.count("#")


def _fence_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(("```", "~~~"))]


CODE = '''Intro to the code.

   ~~~~python title="range.py"
   def beam_range(height_m):
       """Distance to the horizon in nautical miles."""

       import math


       return 1.17 * math.sqrt(height_m * 3.28)
   ~~~~

After the code.
'''


def test_a_fenced_block_that_fits_is_one_unit():
    chunks = list(Chunker(count_tokens(CODE) - 6).chunks(Document("c.md", CODE)))
    code = CODE[CODE.index("   ~~~~python"):CODE.rindex("~~~~") + 4]
    assert sum(code in c.text for c in chunks) == 1  # whole, blank lines, indentation and all
    for c in chunks:
        assert CODE[c.start:c.end] == c.text


@pytest.mark.parametrize("budget", [24, 30, 45])
def test_a_fenced_block_over_the_budget_is_cut_between_lines_and_fenced_again(budget):
    body = "\n".join(f"    total_{i} = compute(total_{i - 1}, step={i})" + ("\n" if i % 3 == 0 else "")
                     for i in range(1, 25))
    text = f"Before.\n\n  ```python {{.numberLines}}\n{body}\n  ```\n\nAfter.\n"
    chunks = [c for c in Chunker(budget).chunks(Document("c.md", text)) if "total_" in c.text]
    assert len(chunks) > 2
    code_lines = []
    for c in chunks:
        assert c.tokens == count_tokens(c.text) <= budget
        lines = c.text.splitlines()
        assert _fence_lines(c.text) == ["```python {.numberLines}", "```"]  # one block, fenced as it was
        opening, closing = lines.index("  ```python {.numberLines}"), lines.index("  ```")
        assert opening < closing and all(line in ("Before.", "After.", "") for line in lines[:opening] +
                                         lines[closing + 1:])
        code_lines += [line for line in lines[opening + 1:closing] if line.strip()]
        assert text[c.start:c.end] in c.text and is_cut_from(text, c)  # the offsets cover the source it holds
    assert code_lines == [line for line in body.splitlines() if line.strip()]  # indentation kept


@pytest.mark.parametrize("budget", [40, 70])
def test_a_table_is_cut_between_rows_and_each_piece_repeats_its_header(budget):
    header = "| Light | Built | Height |\n|:---|---:|---|"
    rows = [f"| Light number {i} | {1800 + i} | {10 + i} m |" for i in range(30)]
    text = "## Lights\n\n" + header + "\n" + "\n".join(rows) + "\n\nThe end.\n"
    chunks = [c for c in Chunker(budget).chunks(Document("t.md", text)) if "Light number" in c.text]
    assert len(chunks) > 2
    seen = []
    for c in chunks:
        assert c.tokens <= budget and is_cut_from(text, c)
        table = c.text[c.text.index("| Light |"):].split("\n\n")[0].splitlines()
        assert "\n".join(table[:2]) == header
        assert all(row in rows for row in table[2:])
        seen += table[2:]
    assert seen == rows


def test_the_language_setting_is_checked_and_reaches_the_chunker(tmp_path):
    from datagen.workspace.config import load_config
    from datagen.errors import DatagenError

    (tmp_path / "datagen.toml").write_text('[chunking]\nlanguage = "xx"\n')
    with pytest.raises(DatagenError, match=r"chunking\.language: .*unknown language 'xx'"):
        load_config(tmp_path, environ={})
    (tmp_path / "datagen.toml").write_text('[chunking]\nlanguage = "el"\n')
    assert Chunker(64, language=load_config(tmp_path, environ={}).chunking.language)._sentences.language == "el"


# --- a very long line: what keeps it fast, checked by what the chunker is given, not by the clock ---------------
# (bench/chunk_bench.py times 8 MiB and 50 MB lines.)


@pytest.mark.parametrize("sep", [" ", ""])
def test_a_long_line_is_never_handed_whole_to_pysbd_or_the_tokenizer(monkeypatch, sep):
    import datagen.text.chunking as chunking
    import datagen.text.sentences as sentences

    rng = random.Random(0)
    words = [rng.choice(WORDS).capitalize() + ("." if rng.random() < 0.01 else "") for _ in range(25_000)]
    text = sep.join(words)  # about 125,000 characters on one line
    segmented, counted = [], []
    real_segmenter, real_head = sentences._segmenter, chunking.head_within

    def segmenter(language):
        real = real_segmenter(language)
        return type("Spy", (), {"segment": lambda self, t: segmented.append(len(t)) or real.segment(t)})()

    def counting(t):
        counted.append(len(t))
        return count_tokens(t)

    def head_within(t, budget):
        counted.append(len(t))
        return real_head(t, budget)

    monkeypatch.setattr(sentences, "_segmenter", segmenter)
    monkeypatch.setattr(chunking, "head_within", head_within)
    monkeypatch.setattr(chunking, "count_tokens", counting)
    chunks = list(Chunker(200, count=counting).chunks(Document("long.txt", text)))
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert all(c.tokens <= 200 for c in chunks)
    assert max(segmented, default=0) <= sentences.SENTENCE_WINDOW_CHARS  # pysbd is quadratic in its input
    # Each count or encoding covers about a chunk (a few, aiming a cut), never the line: linear in all.
    assert max(counted) <= 200 * chunking._HEAD_CHARS_PER_TOKEN
    assert sum(counted) <= 5 * len(text)


@pytest.mark.parametrize("text", [
    "བཀྲ་ཤིས་བདེ་ལེགས་ཕུན་སུམ་ཚོགས་" * 200 + "།",  # Tibetan: syllables, no spaces, one long sentence
    "བཀྲཤིསབདེལེགསཕུནསུམཚོགས" * 200 + "།",  # ... without even a tsheg: consonants with vowel signs
    "".join(random.Random(7).choices(["👩‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "🇫🇷", "क्षि", "é"], k=2000)),
], ids=["tibetan", "tibetan-without-tsheg", "emoji-and-clusters"])
def test_a_sentence_over_the_budget_is_cut_between_characters_as_written(text):
    # Without a space to cut at, a piece ends after a separator of syllables (Tibetan's tsheg), else between two
    # grapheme clusters: never between a consonant and its vowel sign, nor inside an emoji sequence.
    chunks = list(chunk_documents([Document("x.txt", text)], 20))
    boundaries = {m.start() for m in regex.finditer(r"\X", text)} | {len(text)}
    assert len(chunks) > 5 and all(c.start in boundaries and c.end in boundaries for c in chunks)
    assert all(c.tokens <= 20 for c in chunks)
    if "་" in text:
        assert all(c.text.endswith(("་", "།")) for c in chunks)
