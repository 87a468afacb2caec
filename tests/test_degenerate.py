"""Degenerate output never becomes a sample: datagen/text/degenerate.py's reasons, real prose in many scripts left
alone, the adapters failing a text field given a JSON object, and a style_clone run over HTTP whose model answers
degenerate text exporting nothing and counting the drops by reason."""

import json
import random
import string

import dspy
import pydantic
import pytest
import regex
from dspy.utils.exceptions import AdapterParseError

from datagen.lm.adapters import ChatAdapter, JSONAdapter
from datagen.text.chunking import chunk_documents
from datagen.workspace.config import Config, ModelSettings
from datagen.text.degenerate import REASONS, REWRITE_MIN_LENGTH_RATIO, degenerate, is_serialized_object
from datagen.runs.generate import RunSettings, generate
from datagen.text.ingest import iter_documents
from datagen.lm.roles import build_role_model

from .conftest import ROOT, SAMPLES, run_cli
from .fakes import FakeOpenAIServer, chat_format

# Real prose in many languages and scripts (written for these tests): none of it may be dropped.
PROSE = {
    "english": "The keeper climbed the ninety-two steps at dusk, trimmed the wicks and lit the lamp. By midnight the "
               "wind had risen, and spray rattled on the lantern panes like flung gravel.",
    "french": "Le gardien monta les quatre-vingt-douze marches au crépuscule et alluma la lampe. Vers minuit, le vent "
              "se leva et les embruns frappèrent les vitres de la lanterne comme du gravier.",
    "german": "Nichts Schlechtes hatte er getan; trotzdem erschrak er, denn draußen stürmte es schrecklich. Der "
              "Leuchtturmwärter stieg in der Abenddämmerung die zweiundneunzig Stufen hinauf und zündete die Lampe an.",
    "polish": "Wszystkich przyjaciół zaprosiłem na szczęśliwe święta. Pszczoły brzęczały w trzcinie, a chrząszcz "
              "siedział na źdźble trawy przy brzegu rzeki, gdzie zawsze przychodziliśmy wieczorem.",
    "czech": "Strážce majáku vystoupal za soumraku po schodech a rozsvítil lampu. Kolem půlnoci se zvedl vítr a "
             "čtvrt hodiny nato bičovala sprška skla lucerny jako štěrk.",
    "welsh": "Roedd y ceidwad yn dringo'r grisiau bob nos ac yn cynnau'r lamp. Yn y bore, roedd y gwynt yn chwythu "
             "o'r de-orllewin, a'r cwch bach yn aros yn y cwm wrth y môr.",
    "turkish": "Fener bekçisi akşam karanlığında doksan iki basamağı tırmandı ve lambayı yaktı. Gece yarısına doğru "
               "rüzgâr çıktı ve deniz serpintisi fenerin camlarına çakıl gibi çarptı.",
    "vietnamese": "Người gác hải đăng leo lên chín mươi hai bậc thang lúc chạng vạng và thắp đèn. Đến nửa đêm, gió nổi "
                  "lên và bọt sóng đập vào kính đèn như sỏi ném.",
    "russian": "Смотритель маяка поднялся на закате по девяноста двум ступеням и зажёг лампу. К полуночи поднялся "
               "ветер, и брызги застучали по стёклам фонаря, словно брошенный гравий.",
    "greek": "Ο φύλακας του φάρου ανέβηκε τα ενενήντα δύο σκαλιά το σούρουπο και άναψε τη λάμπα. Κατά τα μεσάνυχτα "
             "σηκώθηκε άνεμος και τα σταγονίδια χτυπούσαν τα τζάμια σαν χαλίκια.",
    "georgian": "შუქურის მცველი საღამოს კიბეზე ავიდა და ლამპა აანთო. შუაღამისას ქარი ამოვარდა და ტალღები "
                "ფანჯრებს ეხეთქებოდა.",
    "armenian": "Փարոսապահը մթնշաղին բարձրացավ աստիճաններով և վառեց լամպը։ Կեսգիշերին քամի բարձրացավ։",
    "chinese": "黄昏时分，看守人爬上九十二级台阶，点亮了灯。到了半夜，风越刮越大，浪花像碎石一样打在灯室的玻璃上。"
               "他整夜没有合眼，一直守着那盏灯。",
    "japanese": "夕暮れになると、灯台守は九十二段の階段を上り、ランプに火をともした。真夜中には風が強まり、"
                "しぶきが小石のようにガラスを打った。",
    "korean": "등대지기는 해질녘에 아흔두 개의 계단을 올라가 등불을 켰다. 한밤중이 되자 바람이 거세졌고, 물보라가 "
              "자갈처럼 유리창을 때렸다.",
    "arabic": "صعد حارس المنارة الدرجات عند الغروب وأشعل المصباح. وعند منتصف الليل اشتدت الريح، وأخذ رذاذ البحر "
              "يضرب زجاج الفانوس كالحصى.",
    "hebrew": "שומר המגדלור עלה במדרגות עם רדת החשכה והדליק את המנורה. בחצות התחזקה הרוח, והרסס הכה בזגוגיות כמו חצץ.",
    "persian": "نگهبان فانوس دریایی هنگام غروب از پله‌ها بالا رفت و چراغ را روشن کرد. نیمه‌شب باد شدت گرفت.",
    "hindi": "संध्या होते ही प्रकाशस्तंभ का रखवाला बानवे सीढ़ियाँ चढ़ा और दीपक जलाया। आधी रात तक हवा तेज़ हो गई और "
             "समुद्र की फुहारें काँच पर कंकड़ों की तरह टकराने लगीं।",
    "bengali": "সন্ধ্যা নামতেই বাতিঘরের রক্ষক সিঁড়ি বেয়ে উপরে উঠে বাতি জ্বালালেন। মাঝরাতে বাতাস প্রবল হয়ে উঠল।",
    "tamil": "மாலையில் கலங்கரை விளக்கக் காவலர் படிகளில் ஏறி விளக்கை ஏற்றினார். நள்ளிரவில் காற்று பலமாக வீசியது.",
    "thai": "เมื่อพลบค่ำ ผู้เฝ้าประภาคารปีนบันไดขึ้นไปจุดตะเกียง พอถึงเที่ยงคืน ลมก็แรงขึ้น",
    "tibetan": "བོད་ནི་ཨེ་ཤེ་ཡའི་དབུས་སུ་ཡོད་པའི་ས་མཐོ་ཤོས་ཀྱི་ཡུལ་ཞིག་རེད། བོད་ཀྱི་སྐད་ཡིག་ལ་ལོ་རྒྱུས་རིང་པོ་ཡོད། "
               "དགུན་ཁ་ཁ་བ་མང་པོ་བབས་ནས་ལམ་ཚང་མ་འགག་སོང་།",
    "amharic": "የብርሃን ማማው ጠባቂ በመሸ ጊዜ ደረጃዎቹን ወጥቶ መብራቱን አበራ። እኩለ ሌሊት ላይ ነፋሱ በረታ።",
}
# Short answers and lines of dialogue that look odd and are real.
SHORT_PROSE = ["Leonardo da Vinci painted it.", "In 1823.", "From 1823 to 1840.", "In 1823, 1840, 1856 and 1901.",
               "None.", "Yes, it is.", "CNN, BBC and NBC reported it.", "Ha, ha! Ha, ha, ha, ha!",
               "'To bring you home, home, home!'", "He opened report.pdf and read it twice.", "Why?", "Hmm.",
               "The 1990s were the decade of the Internet.", "She paid £4 10s. for the A380 ticket.",
               # Answers from a technical corpus: prose that quotes a tag or states a formula is no markup or code.
               "In HTML, write <b>bold</b> text by wrapping it in the b element.", "Area = length times width.",
               "The page ran <script>alert(1)</script> when it loaded, which is how the attack worked."]


def sentences(text: str) -> list[str]:
    return [s for s in regex.split(r"(?<=[.!?。।།።։])\s*", text) if s.strip()]


@pytest.mark.parametrize("language", PROSE)
def test_real_prose_in_every_script_is_kept(language):
    text = PROSE[language]
    assert degenerate(text, field="generic") is None
    assert [degenerate(s, field="generic") for s in sentences(text)] == [None] * len(sentences(text))


@pytest.mark.parametrize("text", SHORT_PROSE)
def test_short_real_text_is_kept(text):
    assert degenerate(text, field="answer") is None


# The degenerate answers issue 22 met with real models, and one of each kind.
DEGENERATE = {
    "generic": "placeholder", "{generic}": "placeholder", "{{generic}}": "placeholder", ".": "empty",
    "{'introduction': [...]}": "serialized",
    "{'passage_text1234567890.csv': '', 'passage_text2.csv': ''}": "serialized",
    "": "empty", "   \n\t\u200b": "empty", "—": "empty", "?!": "empty",
    "[generic]": "placeholder", "<generic>": "placeholder", "'Generic'": "placeholder", "GENERIC:": "placeholder",
    "[[ ## generic ## ]]": "placeholder", "{{ passage }}": "placeholder", "${text}": "placeholder",
    "The {generic} of the passage.": "placeholder", "TODO": "placeholder", "...": "placeholder", "…": "placeholder",
    "N/A": "placeholder", "null": "placeholder",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.": "placeholder",
    '{"generic": "The keeper lit the lamp."}': "serialized",
    '["The keeper lit the lamp.", "It was dusk."]': "serialized",
    "Here it is: {'generic': 'The keeper lit the lamp at dusk, as every night.'}": "serialized",
    "{'introduction': ['The keeper": "serialized", "```\nThe keeper lit the lamp.\n```": "serialized",
    "<p>The keeper lit the lamp.</p>\n<p>It was dusk.</p>": "serialized", "print(passage)": "serialized",
    "import json\nprint(json.dumps(passage))": "serialized", "generic = passage.strip()": "serialized",
    "passage_text1234567890.csv": "not_language", "/home/user/passage_text.txt": "not_language",
    "1234 5678 9012 3456 7890": "not_language", "#### $$$$ %%%% &&&& ****": "not_language",
    "🙂🙂🙂🙂🙂🙂": "not_language", "asdfghjkl": "not_language", "jkl; asdf jkl; fdsa; hjkl lkjh": "not_language",
    "the the the the the the the the the": "not_language",
    "The keeper. The keeper. The keeper. The keeper. The keeper. The keeper.": "not_language",
    "好好好好好好好好好好": "not_language", "маяк маяк маяк маяк маяк маяк маяк маяк": "not_language",
    "المنارة المنارة المنارة المنارة المنارة المنارة المنارة المنارة": "not_language",
    "दीपक दीपक दीपक दीपक दीपक दीपक दीपक दीपक": "not_language",
    "маяк lamp 灯塔 маяк lamp 灯塔 маяк lamp 灯塔 маяк lamp 灯塔": "not_language",
    # Three scripts a fifth each, nothing repeated (Cyrillic and CJK are two groups: the check reads each
    # character's group from a table, and two groups must not share an entry).
    "маяк lamp 灯塔灯 ночь wind 夜晚晚 море sea 海洋海 свет light 光芒光": "not_language",
    # A letter whose accentless form is two letters (`ŉ` is `ʼn`) counts as one consonant.
    "ŉŉŉŉ ŉŉŉŉŉ ŉŉŉ ŉŉŉŉ": "not_language",
}


@pytest.mark.parametrize("text, reason", DEGENERATE.items(), ids=[repr(t)[:40] for t in DEGENERATE])
def test_each_kind_of_degenerate_text_is_caught(text, reason):
    assert degenerate(text, field="generic") == reason


def test_random_letters_are_not_language():
    # Forty random "words" of three to eight letters: caught 95.5% of the time (a check without a language model
    # cannot catch every one: some draws have vowels enough to look like words).
    rng = random.Random(0)
    texts = [" ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(40))
             for _ in range(200)]
    assert sum(degenerate(text) == "not_language" for text in texts) >= 0.95 * len(texts)


def test_the_field_name_is_what_makes_a_bare_word_a_placeholder():
    assert degenerate("{question}", field="question") == degenerate("Questions", field="question") == "placeholder"
    assert degenerate("[[ ## answer ## ]]", field="answer") == "placeholder"
    assert degenerate("Generic", field="answer") is None  # a word, when it is not the field's name


# --- copy and length, against the project's own human rewrites -----------------------------------------------

PAIRS = [json.loads(line) for line in (ROOT / "data/style_clone/pairs.jsonl").read_text().splitlines()]


def rewrite_check(text: str, source: str) -> str | None:
    """What style_clone asks of its rephrase."""
    return degenerate(text, source=source, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO)


@pytest.mark.parametrize("pair", PAIRS, ids=range(len(PAIRS)))
def test_a_human_rewrite_passes_and_copies_and_halves_of_it_do_not(pair):
    styled, plain = pair["styled"], pair["plain"]
    assert rewrite_check(plain, styled) is None
    typographic = styled.replace("'", "\u2019").replace('"', "\u201c").upper()
    assert rewrite_check("  ".join(typographic.split()), styled) == "copy"  # case, spacing and quotes aside
    words = styled.split()
    assert rewrite_check(" ".join(w for i, w in enumerate(words) if i % 20 != 7), styled) == "copy"  # nearly
    assert rewrite_check(" ".join(words[:len(words) // 2]), styled) == "copy"  # a part of it
    assert rewrite_check(" ".join(plain.split()[:len(plain.split()) // 2]), styled) == "too_short"


def test_copy_and_length_need_a_source_and_length_its_ratio():
    styled, plain = PAIRS[0]["styled"], PAIRS[0]["plain"]
    assert degenerate(styled) is None and degenerate(plain[:40]) is None  # no source: neither is judged
    assert degenerate(plain[:60], source=styled) is None  # a short output is fine unless asked otherwise
    assert degenerate(plain[:60], source=styled, min_length_ratio=0.1) is None
    # A question may repeat a few words of its passage; a sentence copied whole is a copy.
    sentence = "Stand aside, thou long-legged beggar"
    assert sentence in styled and degenerate(sentence, source=styled) == "copy"
    assert degenerate("Why did the miller's daughter go down to the weir?", source=styled) is None


def test_reasons_are_checked_in_their_documented_order():
    assert REASONS == ("empty", "placeholder", "serialized", "not_language", "copy", "too_short")
    source = "{generic}"
    assert degenerate("{generic}", source=source, field="generic") == "placeholder"  # not "copy"


# --- the adapters ----------------------------------------------------------------------------------------------

class Facts(pydantic.BaseModel):
    names: list[str]


class Rephrase(dspy.Signature):
    passage: str = dspy.InputField()
    generic: str = dspy.OutputField()


class Typed(dspy.Signature):
    passage: str = dspy.InputField()
    questions: list[str] = dspy.OutputField()
    facts: Facts = dspy.OutputField()
    answerable: bool = dspy.OutputField()


OBJECT = {"introduction": ["The keeper lit the lamp."]}


@pytest.mark.parametrize("value", [json.dumps(OBJECT), repr(OBJECT), '["The keeper lit the lamp."]', "{}", "[1, 2]"])
@pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter()], ids=["chat", "json"])
def test_a_text_field_given_a_json_object_or_list_fails_to_parse(adapter, value):
    answers = {"chat": chat_format({"generic": value}),
               "json": json.dumps({"generic": json.loads(value) if value[0] in "[{" and '"' in value else value})}
    with pytest.raises(AdapterParseError, match="the text field generic holds a JSON object or list"):
        adapter.parse(Rephrase, answers["json" if isinstance(adapter, JSONAdapter) else "chat"])


@pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter()], ids=["chat", "json"])
def test_text_about_braces_and_typed_fields_parse_as_before(adapter):
    text = "The keeper kept a list [oil, wicks, glass] and wrote {nothing} else."
    values = {"questions": ["Who lit the lamp?"], "facts": {"names": ["Josiah"]}, "answerable": True}
    if isinstance(adapter, JSONAdapter):
        rephrase, typed = json.dumps({"generic": text}), json.dumps(values)
    else:
        rephrase = chat_format({"generic": text})
        typed = chat_format({name: json.dumps(value) for name, value in values.items()})
    assert adapter.parse(Rephrase, rephrase) == {"generic": text}
    assert adapter.parse(Typed, typed) == {"questions": ["Who lit the lamp?"], "facts": Facts(names=["Josiah"]),
                                           "answerable": True}


def test_is_serialized_object():
    assert all(map(is_serialized_object, ['{"a": 1}', "{'a': [...]}", "[1, 2]", "('a', 'b')", " [] ", "{'x'}"]))
    assert not any(map(is_serialized_object, ["(He left.)", "[Illustration]", "{generic}", "text", '"quoted"']))


# --- a style_clone run over HTTP --------------------------------------------------------------------------------

CHUNKS = [c.text for c in chunk_documents(iter_documents([SAMPLES]), 300)]
GIBBERISH = "sdkfj qwpzx lkjhg mnbvc asdfg poiuy zxcvb lkjhg qwert yuiop mnbvc sdfgh jklzx"
# What the model answers for `generic`, by chunk: a placeholder, a copy, gibberish, a JSON object.
ANSWERS = ["{generic}", CHUNKS[1], GIBBERISH, OBJECT]


def degenerate_rephrase(passage: str):
    return ANSWERS[CHUNKS.index(passage)] if passage in CHUNKS[:len(ANSWERS)] else passage


def test_a_run_whose_model_answers_degenerate_text_exports_nothing_and_counts_why(workspace, tmp_path):
    with FakeOpenAIServer(by_field={"generic": degenerate_rephrase}) as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url, num_retries=0,
                                               max_tokens=400), "task")
        report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=300, limit=len(ANSWERS)))
    assert report.chunks == len(ANSWERS) and report.samples == report.exported == 0
    assert report.data_path.read_text() == ""
    assert report.dropped == {"placeholder": 1, "copy": 1, "not_language": 1}
    # The JSON object fails to parse, in the chat format and in the JSON adapter's retry alike.
    assert report.failures == {"parse": 1}


def test_generate_ends_with_the_drops_by_reason(workspace):
    with FakeOpenAIServer(by_field={"generic": degenerate_rephrase}) as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "3", "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    drops = "3 (copy 1, not_language 1, placeholder 1)"
    assert f"dropped by the pipeline's own checks: {drops}" in result.stderr
    # Nothing passed: an empty dataset is an error that says why.
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the dataset is empty: the pipeline's own checks dropped every candidate: {drops}")


SOURCE = PAIRS[0]["styled"]
REWRITE = PAIRS[0]["plain"]


def _shuffled_letters(text: str, seed: int = 0) -> str:
    rng = random.Random(seed)
    return regex.sub(r"\p{L}+", lambda m: "".join(rng.sample(m.group(), len(m.group()))), text)


def test_a_copy_stripped_of_punctuation_or_with_its_words_shuffled_is_a_copy():
    # What a new user's trial found exported: a chunk with its punctuation taken out, and the fake model's reworded
    # "rephrase" (its words lower-cased, the middle two of every four swapped), passed every check.
    stripped = regex.sub(r"[^\w\s’']", "", SOURCE)
    words = stripped.lower().split()
    for i in range(0, len(words) - 3, 4):
        words[i + 1], words[i + 2] = words[i + 2], words[i + 1]
    sentences_reversed = " ".join(reversed(sentences(SOURCE)))
    # Punctuation taken out may leave a space (`long legged`) or join words (`longlegged`).
    spaced = " ".join(regex.sub(r"[^\w\s]", " ", SOURCE).split())
    for copy in (stripped, " ".join(words), sentences_reversed, spaced, " ".join(sorted(spaced.lower().split()))):
        assert degenerate(copy, source=SOURCE, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) == "copy"


def test_the_source_carried_over_verbatim_is_a_copy_whatever_is_added_around_it():
    # What SmolLM2-135M wrote for a passage of the demo corpus: the passage without its heading, verbatim, and then
    # a sentence of it again, reworded; its longest verbatim part is 0.81 of it, so only the share of the source
    # carried (0.94) tells it for a copy.
    heading = "## V. What the Spring Brought Ashore\n\n"
    passage = ("The relief boat came out to us in the first week of March, when the sea had at last remembered its "
               "manners, and took Étienne off to the mainland. He shook my hand on the landing-stage, and kissed "
               "Josiah upon both cheeks, which the lad bore with the expression of a man being shaved by a bear; and "
               "then he went down into the boat, and waved his cap, and was gone.")
    answer = passage + " He returned to the ship, and kissed Josiah upon both cheeks, which the lad carried well."
    assert degenerate(answer, source=heading + passage, field="generic",
                      min_length_ratio=REWRITE_MIN_LENGTH_RATIO) == "copy"
    for added in (f"{SOURCE} {sentences(REWRITE)[0]}", f"{sentences(REWRITE)[0]} {SOURCE}"):
        assert degenerate(added, source=SOURCE, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) == "copy"
    # A rewrite that keeps a phrase of its source is no copy.
    assert degenerate(REWRITE, source=SOURCE, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) is None


def test_the_prompt_echoed_in_an_answer_is_a_placeholder():
    # Gemma 3 270M's answer (bench/embedded_models.py): part of the passage, then DSPy's own instruction.
    echoed = f"{REWRITE}\n\nRespond with a JSON object in the following order of fields: `generic`.yaml\n}}:{{ 1."
    assert degenerate(echoed, source=SOURCE, field="generic") == "placeholder"
    for sentence in ("Your output fields are: 1. `generic` (str)", "respond with the corresponding output fields",
                     "Respond with the output fields `[[ ## generic ## ]]`",  # datagen's ChatAdapter
                     "Answer with a JSON object with these keys: generic",  # datagen's DescribedJSONAdapter
                     "The user's message gives each input after its marker ([[ ## passage ## ]])."):
        assert degenerate(f"{REWRITE} {sentence}", field="generic") == "placeholder"
    # Prose that talks of responding is prose.
    assert degenerate("She did not respond with a letter, nor with a visit.", field="generic") is None


def test_a_rewrite_with_its_letters_shuffled_is_not_language_and_the_rewrite_itself_passes():
    assert degenerate(REWRITE, source=SOURCE, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) is None
    for seed in range(5):
        assert degenerate(_shuffled_letters(REWRITE, seed), source=SOURCE, field="generic",
                          min_length_ratio=REWRITE_MIN_LENGTH_RATIO) == "not_language"


def test_a_free_rewrite_of_a_short_line_is_kept():
    # A line of dialogue and its plain version share few words, and a short source says little of its language.
    line = "Thou art a villain, and I'll not budge from hence till thou hast answered me, by my troth."
    plain = "You're a scoundrel, and I'm staying right here until you give me an answer, I swear."
    assert degenerate(plain, source=line, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) is None
