"""datagen view in a real browser: headless Chromium, driven by selenium, on `datagen view` started as the installed
command. A reviewer opens a run, orders the samples worst first by chrf, rates two from the keyboard, corrects a
third in the form, reloads and finds all of it stored (in the pages and in the run store); the export leaves the
rejected sample out and writes the correction; `judge-check --human` reports the agreement worked out by hand.
And pages show a sample's `<script>` as text, and the server refuses a change without the session's token. A run
evaluated by `datagen eval-model` links to its models page, which shows each model's answer against the reference. A
run measured by `datagen quality` links to its quality page, from which a flagged sample leads to the one it repeats.

The browser is Debian's chromium and chromium-driver (tests/browser.py). Without them these tests are skipped,
unless DATAGEN_BROWSER_TESTS=1 (as `make test` sets, after installing them): then they fail.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from datagen.dataset.export import sample_id
from datagen.store import RunStore

from .browser import ViewServer, chromium, copy_workspace, missing, scored_run
from .conftest import ROOT, every_record, run_cli
from .fakes import plain
from .test_view import BROKEN, model_evaluated_run, screened_run

SCRIPT = "<script>alert(1)</script>"
CORRECTION = "A keeper's line, corrected by hand.\nAnd a second line."
COMMENT = "The rephrase kept the author's wording."
# A passage of a file with Windows line ends: a browser sends every textarea's line breaks as \r\n.
CRLF = "# The relief\r\n\r\nThe relief boat came at noon, and the keeper went ashore with his sea chest.\r\n\r\n" \
       "He did not look back at the light."


def scripted(text: str) -> str:
    """The fake model's rephrase, with a script tag in those of passages about the bell (shown as text, or not
    at all)."""
    return plain(text) + (f" {SCRIPT}" if "Bell" in text else "")


@dataclass
class Served:
    url: str
    run: Path
    workspace: Path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = missing()
    if reason:
        if os.environ.get("DATAGEN_BROWSER_TESTS") == "1":
            pytest.fail(f"DATAGEN_BROWSER_TESTS=1, but there is no browser to test datagen view in: {reason}")
        pytest.skip(f"no browser to test datagen view in: {reason} (DATAGEN_BROWSER_TESTS=1 makes this a failure)")
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(browser, tmp_path_factory):
    """`datagen view RUN --port 0` over a scored style_clone run, in a subprocess, for the module's tests."""
    base = tmp_path_factory.mktemp("view")
    workspace = copy_workspace(ROOT, base / "ws")
    (workspace / "data/samples/relief.md").write_bytes(CRLF.encode())
    run = base / "run"
    report = scored_run(workspace, run, scripted)
    assert report.samples >= 8 and not report.failures
    with ViewServer(str(run), cwd=workspace) as server:
        yield Served(server.url, run, workspace)
        assert server.process.poll() is None, f"datagen view stopped: {server.stderr()}"


@pytest.fixture(scope="module")
def evaluated_view(browser, tmp_path_factory):
    """`datagen view RUN --port 0` over a run evaluated by `datagen eval-model` (test_view.model_evaluated_run):
    the server's URL and the evaluation's record."""
    yield from _view_over(tmp_path_factory, "model-eval-view", model_evaluated_run)


@pytest.fixture(scope="module")
def screened_view(browser, tmp_path_factory):
    """`datagen view RUN --port 0` over test_view.screened_run (a reprinted passage, a protected sentence): the
    server's URL and the run's record."""
    yield from _view_over(tmp_path_factory, "quality-view", screened_run)


def _view_over(tmp_path_factory, name: str, make_run):
    """`datagen view RUN --port 0` over the run `make_run(workspace, run)` makes in a copy of the workspace: yields
    the server's URL and what `make_run` returned, then checks the server is still up."""
    base = tmp_path_factory.mktemp(name)
    workspace = copy_workspace(ROOT, base / "ws")
    made = make_run(workspace, base / "run")
    with ViewServer(str(base / "run"), cwd=workspace) as server:
        yield server.url, made
        assert server.process.poll() is None, f"datagen view stopped: {server.stderr()}"


# --- helpers -------------------------------------------------------------------------------------------------

def wait(driver, condition, timeout: float = 30, ignoring: tuple = ()):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=ignoring).until(condition)


def element(driver, css: str, timeout: float = 30):
    """The element `css` selects, once the page has it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    return wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, css)), timeout)


def elements(driver, css: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def navigates(driver, action, then: str = "main"):
    """Do `action` (a click, a key) and wait until it has loaded another page holding `then`. The page it leaves is
    marked, and the wait is for a loaded page without the mark (asked while the browser navigates, the driver may
    answer with an error: asked again)."""
    from selenium.common.exceptions import WebDriverException

    driver.execute_script("document.documentElement.dataset.left = 'yes'")
    action()
    wait(driver, lambda d: d.execute_script("return document.readyState === 'complete' && "
                                            "!document.documentElement.dataset.left"), ignoring=(WebDriverException,))
    return element(driver, then)


def keys(driver, *pressed) -> None:
    """Keys typed into whatever has the focus (the page, when nothing has), as a person types them."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*pressed).perform()


def ctrl_enter(driver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()


def here(driver) -> tuple[str, int]:
    """(chunk id, sample index) of the sample page the browser shows."""
    parts = urllib.parse.urlparse(driver.current_url).path.split("/")
    assert parts[1:4] == ["r", "0", "s"], driver.current_url
    return parts[4], int(parts[5])


def listed(driver) -> list[tuple[str, int]]:
    """(chunk id, sample index) of each row of the sample list the browser shows."""
    rows = []
    for row in elements(driver, "table#samples tr[data-href]"):
        parts = urllib.parse.urlparse(row.get_attribute("data-href")).path.split("/")
        rows.append((parts[4], int(parts[5])))
    return rows


def no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    pytest.fail(f"an alert fired: {text!r}")


def page_errors(driver) -> list[str]:
    """What the browser's console logged as errors since last asked (a script error, a refused script)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def scores(run: Path) -> dict[tuple[str, int], float]:
    with RunStore(run) as store:
        return {(chunk.id, index): store.sample_scores(chunk.id)[index]["chrf"]
                for chunk, samples in store.done() for index in range(len(samples))}


def reviews(run: Path) -> dict:
    with RunStore(run) as store:
        return store.reviews()


def judge_check(served: Served, name: str) -> tuple[dict, str]:
    """`datagen judge-check RUN --human --min-score chrf=0.25`: its figures (--json) and what it printed."""
    figures = served.run.parent / f"{name}.json"
    result = run_cli("judge-check", str(served.run), "--human", "--min-score", "chrf=0.25", "--json", str(figures),
                     cwd=served.workspace, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return json.loads(figures.read_text()), result.stdout


# --- the review, end to end ----------------------------------------------------------------------------------

def test_a_reviewer_rates_corrects_reloads_exports_and_checks_the_metrics(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver, chrf = browser, scores(served.run)
    page_errors(driver)  # only this test's

    # The run page, then every sample, then the worst first by chrf.
    driver.get(served.url + "/")
    assert element(driver, "h1").text == "run"
    assert urllib.parse.urlparse(driver.current_url).path == "/r/0"
    counts = {dt.text: dd.text for dt, dd in zip(elements(driver, "dl.counts dt"), elements(driver, "dl.counts dd"))}
    assert counts["samples"] == str(len(chrf)) and counts["reviewed"].startswith("0")
    navigates(driver, lambda: driver.find_element(By.LINK_TEXT, "all samples").click(), "table#samples")
    assert len(listed(driver)) == len(chrf)
    Select(element(driver, "select#metric")).select_by_value("chrf")
    Select(element(driver, "select#order")).select_by_value("worst")
    navigates(driver, lambda: element(driver, "button#apply").click(), "table#samples")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
    assert query["metric"] == ["chrf"] and query["order"] == ["worst"]
    shown = [float(cell.text) for cell in elements(driver, "table#samples td.score")]
    assert shown == sorted(shown) and len(shown) == len(chrf)
    order = listed(driver)
    assert [chrf[key] for key in order] == sorted(chrf.values())
    first, second, third = order[:3]

    # j selects the first row, Enter opens it; g rates it good and moves on to the second.
    keys(driver, "j")
    assert elements(driver, "table#samples tr.selected") == elements(driver, "table#samples tr[data-href]")[:1]
    navigates(driver, lambda: keys(driver, Keys.ENTER), "form#review")
    assert here(driver) == first
    assert element(driver, "a#next").get_attribute("href").split("?")[0].endswith(f"/s/{second[0]}/{second[1]}")
    navigates(driver, lambda: keys(driver, "g"), "span#saved")
    assert here(driver) == second
    assert reviews(served.run)[first].verdict == "good"
    # b rates the second bad and moves on to the third.
    navigates(driver, lambda: keys(driver, "b"), "span#saved")
    assert here(driver) == third
    assert reviews(served.run)[second].verdict == "bad"
    assert elements(driver, "b#verdict")[0].text == "not rated"

    # The third: a comment (c), a rating, and its output corrected (e), saved with Ctrl+Enter.
    generated = element(driver, "textarea#correct-output").get_attribute("value")
    keys(driver, "c")
    assert driver.switch_to.active_element.get_attribute("id") == "comment"
    keys(driver, COMMENT)
    element(driver, "h1").click()  # out of the comment, so that e is a shortcut again
    Select(element(driver, "select#rating-content")).select_by_value("2")
    element(driver, "h1").click()
    keys(driver, "e")
    assert element(driver, "details#correction").get_attribute("open") is not None
    box = driver.switch_to.active_element
    assert box.get_attribute("id") == "correct-output"
    box.clear()
    box.send_keys(CORRECTION)
    navigates(driver, lambda: ctrl_enter(driver), "span#saved")
    assert here(driver) == third  # a save stays on the sample

    def third_is_stored() -> None:
        assert element(driver, "pre#output-text").text == CORRECTION
        assert [tag.text for tag in elements(driver, "#diff h2 .tag")] == ["corrected"]  # the output's, not the input's
        assert element(driver, "pre#generated-output").text == generated
        assert element(driver, "details#correction").get_attribute("open") is not None
        assert element(driver, "textarea#correct-output").get_attribute("value") == CORRECTION
        assert element(driver, "textarea#comment").get_attribute("value") == COMMENT
        assert Select(element(driver, "select#rating-content")).first_selected_option.text == "2"
        assert element(driver, "b#verdict").text == "not rated"
        assert elements(driver, "button#drop-correction")

    third_is_stored()
    # Reloaded, and then each sample opened afresh: everything is as it was saved.
    driver.refresh()
    third_is_stored()
    assert not elements(driver, "span#saved") or "saved=1" in driver.current_url
    for key, verdict in ((first, "good"), (second, "bad")):
        driver.get(f"{served.url}/r/0/s/{key[0]}/{key[1]}")
        assert element(driver, "b#verdict").text == verdict
        assert element(driver, "textarea#comment").get_attribute("value") == ""
        assert not elements(driver, "pre#generated-output")
    driver.get(f"{served.url}/r/0/s/{third[0]}/{third[1]}")
    third_is_stored()
    # The list shows the verdicts, and filters by them.
    driver.get(f"{served.url}/r/0/samples?metric=chrf&order=worst")
    cells = [cell.text for cell in elements(driver, "table#samples td.verdict")]
    assert cells[:3] == ["good", "bad", "✎"] and not any(cells[3:])
    Select(element(driver, "form#filters select[name=review]")).select_by_value("bad")
    navigates(driver, lambda: element(driver, "button#apply").click(), "table#samples")
    assert listed(driver) == [second]
    for words in ("corrected by hand", "the author's wording"):  # search finds a correction, and a comment
        driver.get(f"{served.url}/r/0/samples?{urllib.parse.urlencode({'q': words})}")
        assert listed(driver) == [third]

    # In the run store: the verdicts, and the correction beside the generated sample.
    stored = reviews(served.run)
    assert set(stored) == {first, second, third}
    assert (stored[first].verdict, stored[first].corrected) == ("good", False)
    assert (stored[second].verdict, stored[second].corrected) == ("bad", False)
    corrected = stored[third]
    assert (corrected.verdict, corrected.ratings, corrected.comment) == (None, {"content": 2}, COMMENT)
    assert (corrected.input, corrected.output) == (None, CORRECTION)  # the textarea's \r\n came back as \n
    with RunStore(served.run) as store:
        assert store.result(third[0])["samples"][third[1]].output == generated  # the generated text is kept

    # The export without the rejected sample, with the correction in place of the generated output.
    out = served.run.parent / "reviewed.jsonl"
    result = run_cli("export", str(served.run), "-f", "jsonl", "--exclude-rejected", "-o", str(out),
                     cwd=served.workspace)
    assert result.returncode == 0, result.stderr
    records = {r["id"]: r for r in every_record(out)}  # every split: train, validation and test
    assert len(records) == len(chrf) - 1 and f"({len(chrf) - 1} samples" in result.stdout
    assert sample_id(*second) not in records
    assert records[sample_id(*third)]["output"] == CORRECTION
    assert records[sample_id(*first)]["output"] != CORRECTION

    # judge-check --human: the corrected sample counts as bad (the metric scored the generated text), so 1 good
    # and 2 bad, too few for an AUC (it needs 2 of each).
    figures, printed = judge_check(served, "three-reviews")
    (metric,) = figures["metrics"]
    assert (metric["metric"], metric["good"], metric["bad"], metric["auc"]) == ("chrf", 1, 2, None)
    assert metric["auc_note"] == "too few labels: 1 good, 2 bad (needs 2 of each)"
    assert (figures["reviews"], figures["good"], figures["bad"], figures["corrected"]) == (3, 1, 2, 1)
    assert "3 reviews: 1 good, 2 bad (1 corrected" in printed

    # A fourth review, by mouse: the best sample by chrf, good.
    driver.get(f"{served.url}/r/0/samples?metric=chrf&order=best")
    best = listed(driver)[0]
    assert chrf[best] == max(chrf.values()) and best not in (first, second, third)
    row = elements(driver, "table#samples tr[data-href]")[0]
    navigates(driver, lambda: row.find_elements(By.CSS_SELECTOR, "td")[-1].click(), "form#review")  # the row
    assert here(driver) == best
    navigates(driver, lambda: element(driver, "button#good").click(), "span#saved")
    assert here(driver) == best and element(driver, "b#verdict").text == "good"

    # Now 2 good (the worst and the best by chrf) and 2 bad (the second and third worst): of the 4 (good, bad)
    # pairs, the best sample outscores both bad ones and the worst neither, an AUC of 2/4. At the gate's bar
    # of 0.25, which every sample passes: precision 2/4, recall 2/2. The bar that separates them best (Youden's J)
    # is the best sample's own score: it passes 1 sample, good (precision 1, recall 1/2, J 1/2 - 0).
    good, bad = [chrf[first], chrf[best]], [chrf[second], chrf[third]]
    by_hand = sum((g > b) + 0.5 * (g == b) for g in good for b in bad) / (len(good) * len(bad))
    assert by_hand == 0.5 and min(chrf.values()) >= 0.25
    figures, printed = judge_check(served, "four-reviews")
    (metric,) = figures["metrics"]
    assert (metric["good"], metric["bad"], metric["auc"]["n"]) == (2, 2, 4)
    assert metric["auc"]["value"] == pytest.approx(by_hand)
    assert metric["auc"]["low"] <= by_hand <= metric["auc"]["high"]
    assert metric["spearman"] is None and metric["spearman_note"] == "no rating on a criterion named 'chrf'"
    assert any(flag.startswith("chrf: not shown to agree with people: AUC 0.50") for flag in figures["flags"])
    (gate,) = figures["gates"]
    assert (gate["metric"], gate["bar"], gate["n"], gate["good"]) == ("chrf", 0.25, 4, 2)
    assert gate["at_bar"] == {"threshold": 0.25, "passing": 4, "precision": 0.5, "recall": 1.0, "j": None}
    assert gate["best"]["threshold"] == pytest.approx(chrf[best])
    assert (gate["best"]["passing"], gate["best"]["precision"], gate["best"]["recall"]) == (1, 1.0, 0.5)
    assert gate["best"]["j"] == pytest.approx(0.5)
    assert "4 reviews: 2 good, 2 bad" in printed and "0.50" in printed

    # A correction dropped again: the sample is as generated, and keeps its verdict.
    keys(driver, "e")
    box = driver.switch_to.active_element
    box.clear()
    box.send_keys("A passing fancy.")
    navigates(driver, lambda: ctrl_enter(driver), "button#drop-correction")
    assert reviews(served.run)[best].output == "A passing fancy."
    navigates(driver, lambda: element(driver, "button#drop-correction").click(), "span#saved")
    assert not elements(driver, "pre#generated-output") and not elements(driver, "#diff .tag")
    assert element(driver, "b#verdict").text == "good"
    assert (reviews(served.run)[best].verdict, reviews(served.run)[best].corrected) == ("good", False)

    no_alert(driver)
    assert not page_errors(driver)


def test_a_verdict_on_a_sample_with_windows_line_ends_is_no_correction(browser, served):
    driver = browser
    with RunStore(served.run) as store:
        (key, generated), = [((chunk.id, i), sample) for chunk, samples in store.done()
                             for i, sample in enumerate(samples) if "\r\n" in sample.output]
    assert generated.output == CRLF
    driver.get(f"{served.url}/r/0/s/{key[0]}/{key[1]}")
    assert element(driver, "textarea#correct-output").get_attribute("value") == CRLF.replace("\r\n", "\n")
    navigates(driver, lambda: element(driver, "button#bad").click(), "span#saved")
    assert (reviews(served.run)[key].verdict, reviews(served.run)[key].corrected) == ("bad", False)
    assert not elements(driver, "pre#generated-output")
    navigates(driver, lambda: element(driver, "button#clear").click(), "span#saved")  # as it was, for the others
    assert key not in reviews(served.run)


# --- safety --------------------------------------------------------------------------------------------------

def test_a_sample_holding_a_script_shows_it_as_text_and_runs_nothing(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    page_errors(driver)
    driver.get(f"{served.url}/r/0/samples")
    keys(driver, "/")  # the search box, from the keyboard
    assert driver.switch_to.active_element.get_attribute("id") == "search"
    navigates(driver, lambda: keys(driver, "alert", Keys.ENTER), "table#samples")
    assert "q=alert" in driver.current_url
    rows = elements(driver, "table#samples tr[data-href]")
    with RunStore(served.run) as store:
        holding = [(chunk.id, i) for chunk, samples in store.done() for i, s in enumerate(samples) if SCRIPT in s.input]
    assert holding and listed(driver) == holding
    no_alert(driver)
    navigates(driver, lambda: rows[0].find_elements(By.CSS_SELECTOR, "td")[-1].click(), "pre#input-text")
    assert SCRIPT in element(driver, "pre#input-text").text
    assert SCRIPT in element(driver, "textarea#correct-input").get_attribute("value")
    # The text is in the page as text: the only script element is the page's own view.js.
    assert driver.execute_script("return Array.from(document.scripts).map(s => s.getAttribute('src'))") == [
        "/static/view.js"]
    assert driver.execute_script("return document.querySelectorAll('main script, main img').length") == 0
    no_alert(driver)
    chunk, _ = here(driver)
    driver.get(f"{served.url}/r/0/c/{chunk}")  # the chunk page: its steps and LM calls hold it too
    assert SCRIPT in element(driver, "main").text
    no_alert(driver)
    assert not page_errors(driver)


def post(url: str, fields: dict, host: str | None = None) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_change_without_the_session_token_is_refused(served):
    chunk, index = sorted(scores(served.run))[-1]
    target = f"{served.url}/r/0/s/{chunk}/{index}/review"
    before = reviews(served.run).get((chunk, index))
    assert post(target, {"verdict": "bad"}) == 403
    assert post(target, {"verdict": "bad", "token": "forged"}) == 403
    # The token is on the page; with it, from another Host (DNS rebinding), the request is refused too.
    with urllib.request.urlopen(f"{served.url}/r/0/s/{chunk}/{index}", timeout=30) as response:
        page = response.read().decode()
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    assert post(target, {"verdict": "bad", "token": token}, host="attacker.example") == 400
    assert reviews(served.run).get((chunk, index)) == before


# --- a run's model evaluation --------------------------------------------------------------------------------

def test_the_models_page_shows_each_answer_against_the_reference_and_runs_nothing(browser, evaluated_view, served):
    from selenium.webdriver.common.by import By

    driver, (url, result) = browser, evaluated_view
    page_errors(driver)
    driver.get(f"{served.url}/r/0")  # a run no eval-model evaluated: no link
    element(driver, "dl.counts")
    assert not elements(driver, "a#model-eval")
    driver.get(f"{url}/r/0")
    navigates(driver, lambda: element(driver, "a#model-eval").click(), "table#models")
    assert urllib.parse.urlparse(driver.current_url).path == "/r/0/model-eval"
    for model in result["models"]:
        composite = model["scores"]["composite"]
        cell = element(driver, f'table#models tr[data-model="{model["label"]}"] td[data-metric="composite"]')
        mean, low, high = (f"{composite[key]:.3f}" for key in ("mean", "low", "high"))
        assert cell.text.split() == [mean, f"[{low},", f"{high}]"]  # the interval under the mean
    shown = elements(driver, "section.held-out")
    assert [section.get_attribute("id") for section in shown] == [f"sample-{s['id']}" for s in result["samples"]]
    for section, sample in zip(shown, result["samples"]):
        def answer(label: str, css: str):
            return section.find_element(By.CSS_SELECTOR, f'div.answer[data-model="{label}"] {css}')

        assert section.find_element(By.CSS_SELECTOR, "pre.input").text == sample["input"]
        # The oracle's answer is the reference: shown beside it, nothing marked.
        assert answer("oracle", "pre.reference").text == answer("oracle", "pre.answer-text").text == sample["reference"]
        assert not section.find_elements(By.CSS_SELECTOR, 'div.answer[data-model="oracle"] ins, '
                                                          'div.answer[data-model="oracle"] del')
        # The echo's: what it added marked, what it left out of the reference struck, its script tag as text.
        assert answer("echo", "pre.reference").text == sample["reference"]
        assert answer("echo", "pre.answer-text").text == f"{sample['input']} {SCRIPT}"
        assert answer("echo", "pre.answer-text ins") and answer("echo", "pre.reference del")
        assert BROKEN in answer("broken", ".error").text
    assert driver.execute_script("return document.querySelectorAll('main script, main img').length") == 0
    no_alert(driver)
    assert not page_errors(driver)


# --- a run's dataset quality ---------------------------------------------------------------------------------

def test_the_quality_page_leads_from_a_flagged_sample_to_the_one_it_repeats(browser, screened_view):
    from selenium.webdriver.common.by import By

    driver, (url, planted) = browser, screened_view
    page_errors(driver)
    driver.get(f"{url}/r/0")
    navigates(driver, lambda: element(driver, "a#quality").click(), "section.duplicate")
    assert urllib.parse.urlparse(driver.current_url).path == "/r/0/quality"
    first = elements(driver, "section.duplicate")[0]
    flagged, original = (link.text for link in first.find_elements(By.CSS_SELECTOR, "h4 a.sample"))
    expected = {f"{a[0]}#{a[1]}": f"{b[0]}#{b[1]}" for a, b in planted["copies"].items()}
    assert expected[flagged] == original
    # The two texts side by side, the copy's changed word marked, the script tag in them shown as text.
    assert first.find_elements(By.CSS_SELECTOR, "pre.flagged ins") and first.find_elements(By.CSS_SELECTOR,
                                                                                          "pre.original del")
    assert SCRIPT in first.find_element(By.CSS_SELECTOR, "pre.flagged").text
    contaminated = planted["contaminated"]
    row = element(driver, "table#contamination tr[data-sample]")
    assert row.get_attribute("data-sample") == f"{contaminated[0]}#{contaminated[1]}"
    assert row.find_element(By.CSS_SELECTOR, "td.share").text == "100%"
    assert elements(driver, "table#diversity-table tr[data-texts]")
    # The flagged sample's page says why exports leave it out; its link opens the sample it repeats.
    def key(name: str) -> tuple[str, int]:
        chunk, index = name.split("#")
        return chunk, int(index)

    navigates(driver, lambda: first.find_element(By.CSS_SELECTOR, "h4 a.sample").click(), "p#flag")
    assert here(driver) == key(flagged)
    assert element(driver, "p#flag").text.startswith(f"left out of exports: input nearly repeats {original}")
    navigates(driver, lambda: element(driver, "a#repeats").click(), "form#review")
    assert here(driver) == key(original) and not elements(driver, "p#flag")  # the original is kept
    assert driver.execute_script("return document.querySelectorAll('main script, main img').length") == 0
    no_alert(driver)
    assert not page_errors(driver)
