"""The web UI in a real browser: Playwright driving Debian's Chromium (never a downloaded one) against a real
uvicorn server, through the label flow end to end: sign in with a key -> ask (the query is logged) -> rate it
-> label it (an invalid edit is refused inline and nothing is lost; a thumbs-down's answer is not offered as
the reference; the document its feedback named is not listed twice) -> audit the new golden set -> see the
case -> edit it, delete it and undo the delete on the golden set page. Every request the page makes must stay
on this server (no CDN). Screenshots are checked (non-blank, key elements visible); set RAG_SCREENSHOT_DIR (e.g.
guides/img) to keep small copies for the README."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright  # a test extra; it drives Debian's chromium, downloads nothing

from core.settings import Settings
from core.store import open_store
from ingest.pipeline import Ingestor
from tests.conftest import ROOT, scifact_docs, write_corpus
from tests.helpers.service import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's)")

QUESTION = "What happens to a corrupt PDF during ingest?"
KEYS = {"docs-key": ["docs"], "sci-key": ["scifact"]}


@pytest.fixture(scope="module")
def live(tmp_path_factory, embedder):
    tmp = tmp_path_factory.mktemp("ui")
    settings = Settings(data_dir=tmp / "data", collection="docs", api_keys=KEYS, _env_file=None)
    corpus = write_corpus(tmp / "corpus.jsonl", scifact_docs(8))
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([ROOT / "docs"], "docs")
        Ingestor(settings, store, embedder).run([corpus], "scifact")
    server = LiveServer(settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def check_screenshot(path: Path, min_colors: int = 8) -> None:
    """A real picture: a PNG of the viewport with more than a handful of colours (not blank)."""
    from PIL import Image

    assert path.stat().st_size > 5_000, f"{path} is suspiciously small"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= 300
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) >= min_colors, f"{path} looks blank ({len(colors)} colours)"


def keep(path: Path) -> None:
    """A small palette copy for the README, when RAG_SCREENSHOT_DIR says where."""
    out = os.environ.get("RAG_SCREENSHOT_DIR")
    if not out:
        return
    from PIL import Image

    dest = Path(out) / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as img:
        img.convert("RGB").quantize(colors=64).save(dest, optimize=True)


def watched_page(browser, base_url: str):
    """A page, the requests it makes to anywhere but the service, and its script errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    foreign: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(base_url) else foreign.append(req.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, foreign, errors


def assert_clean(foreign: list[str], errors: list[str]) -> None:
    assert foreign == [], f"the UI fetched from elsewhere: {foreign}"
    assert errors == [], errors


PHONE = {"width": 390, "height": 844}
# The page's width against the viewport's, and the elements that stick out past its right edge (for the message).
WIDTH_JS = """() => { const out = [];
  for (const el of document.querySelectorAll('main *, header *')) { const r = el.getBoundingClientRect();
    if (r.right > innerWidth + 1) out.push(`${el.tagName}#${el.id}.${el.className} ${Math.round(r.right)}`); }
  return { scroll: document.scrollingElement.scrollWidth, inner: innerWidth, out: out.slice(0, 6) }; }"""
# Each SVG label's rendered font size: its font-size times the SVG's scale on the page.
LABEL_PX_JS = """(sel) => [...document.querySelectorAll(sel + ' svg')].flatMap((svg) => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].map((t) => parseFloat(getComputedStyle(t).fontSize) * scale); })"""


def assert_fits(page, what: str) -> None:
    """No sideways scrolling of the page (a wide table or chart scrolls in its own box)."""
    w = page.evaluate(WIDTH_JS)
    assert w["scroll"] <= w["inner"], f"{what} scrolls sideways at {w['inner']} px: {w}"


# An element drawn as one box inside main's content (not an inline box broken over lines, nothing sticking out).
ONE_BOX_JS = """(el) => { const b = el.getBoundingClientRect(), m = document.querySelector('main');
  const right = m.getBoundingClientRect().right - parseFloat(getComputedStyle(m).paddingRight);
  return el.getClientRects().length === 1 && b.right <= right + 0.5 && el.scrollWidth <= el.clientWidth; }"""


def assert_readable_plots(page) -> None:
    """Every chart label at least 11 px on screen (the SVGs are not scaled down to fit)."""
    for fig in ("#plot-recall", "#plot-verdicts"):
        sizes = page.evaluate(LABEL_PX_JS, fig)
        assert sizes and min(sizes) >= 11, f"{fig}: labels of {min(sizes or [0]):.1f} px"


def test_label_flow_end_to_end(live, browser, tmp_path):
    # Another collection's query, logged through the API with its own key: the docs key must never see it.
    asked = {"question": "What do microRNAs regulate?", "collection": "scifact"}
    other = live.http.post("/v1/query", json=asked, headers={"X-API-Key": "sci-key"}).json()
    assert other["query_id"]

    page, foreign, errors = watched_page(browser, live.url)

    # Sign in: a wrong key is refused, the right one is kept for the tab.
    page.goto(f"{live.url}/ui")
    page.wait_for_selector("#signin-form")
    assert page.is_hidden("#signout")  # no key, nothing to sign out of
    page.fill("#api-key", "not-a-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-form [role=alert]")
    page.fill("#api-key", "docs-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#ask-form")
    assert page.evaluate("sessionStorage.getItem('rag-why.key')") == "docs-key"
    assert page.is_visible("#signout")
    assert page.locator("#ask-collection option").all_inner_texts() == ["docs"]

    # Ask: the query is logged, its id shown; rate it thumbs-down.
    page.fill("#ask-question", QUESTION)
    page.click("#ask-form button[type=submit]")
    page.wait_for_selector("#ask-query-id")
    query_id = page.inner_text("#ask-query-id")
    assert len(query_id) == 32
    answer = page.inner_text("#ask-answer")
    assert "corrupt" in answer
    # Its [n] markers link to the cited sources listed under it (document id, the quoted span); the cited
    # contexts are marked, and only those.
    cites = page.locator("#ask-answer a.cite")
    assert cites.count() >= 1
    numbers = sorted({int(n) for n in cites.evaluate_all("els => els.map((a) => a.dataset.source)")})
    listed = page.locator("#ask-sources > li")
    assert [int(li.get_attribute("value")) for li in listed.all()] == numbers
    assert "docs/ingesting.md" in page.inner_text("#ask-sources") and "corrupt" in page.inner_text("#ask-sources")
    cites.first.click()
    assert page.evaluate("document.activeElement.id") == f"ask-source-{cites.first.get_attribute('data-source')}"
    assert page.url.endswith("#/queries")  # the link is not taken by the router
    badged = page.locator("#ask-contexts .passage:has(.cited-badge)")
    assert sorted(int(x) for x in badged.evaluate_all("els => els.map((e) => e.dataset.rank)")) == numbers
    assert badged.first.locator(".cited-badge").is_visible()
    assert page.locator("#ask-contexts .passage").count() > len(numbers)  # the uncited ones, unmarked
    page.screenshot(path=str(tmp_path / "ask.png"))
    page.click("#ask-result button[aria-label='Thumbs down']")
    page.wait_for_selector("#ask-result button[aria-label='Thumbs down'][aria-pressed=true]")
    page.wait_for_selector(f"#queries tr[data-query-id='{query_id}']")
    assert page.locator(f"tr[data-query-id='{other['query_id']}']").count() == 0  # scoped to the key
    # The key's one vote, replaced (still thumbs-down), now naming the document that answers it.
    docs_key = {"X-API-Key": "docs-key"}
    vote = {"query_id": query_id, "rating": -1, "correct_doc_id": "docs/ingesting.md"}
    r = live.http.post("/v1/feedback", json=vote, headers=docs_key)
    assert r.status_code == 200 and r.json()["previous_rating"] == -1
    page.screenshot(path=str(tmp_path / "querylog.png"))

    # It is the first candidate to label (a thumbs-down), then label it.
    page.click("nav a[data-page=candidates]")
    page.wait_for_selector("#candidates")
    first = page.locator("#candidates tbody tr").first
    assert first.get_attribute("data-query-id") == query_id
    assert "thumbs down" in first.inner_text()
    first.locator("a.button").click()
    page.wait_for_selector("#label-form")
    assert page.input_value("#label-question") == QUESTION
    # A thumbs-down's answer is not offered as the reference; the feedback's document is offered as a source;
    # not labelled yet, so no notice.
    assert page.input_value("#label-answer") == "" and not page.is_checked("#use-answer")
    assert page.locator("#extra-sources input[aria-label='Document id']").input_value() == "docs/ingesting.md"
    assert page.locator("#label-labelled").count() == 0

    # Saving with nothing picked (the feedback's suggestion removed too) is refused inline.
    page.locator("#extra-sources button:has-text('Remove')").click()
    page.click("#label-save")
    page.wait_for_selector("#label-error [role=alert]")
    assert "unanswerable" in page.inner_text("#label-error")

    # Keyboard: '1' picks passage 1 (outside text fields); then quote the answering sentence, selected with
    # the mouse's range in the passage text.
    page.click("h1")
    page.keyboard.press("1")
    assert page.is_checked("#pick-1")
    sentence = "a corrupt or encrypted PDF, a broken Word file"
    assert sentence in answer
    found = page.evaluate(
        """(s) => { const el = document.getElementById('text-1'); const node = el.firstChild;
                   const at = node.textContent.indexOf(s); if (at < 0) return false;
                   const r = document.createRange(); r.setStart(node, at); r.setEnd(node, at + s.length);
                   const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r); return true; }""",
        sentence,
    )
    assert found, "the cited sentence is in passage 1"
    page.click("#use-selection-1")
    assert page.input_value("#quote-1") == sentence
    page.select_option("#grade-1", "3")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "label.png"))

    # An invalid extra source: the golden-set loader's error is shown inline, and no edit is lost.
    page.click("#add-source")
    page.locator("#extra-sources input[aria-label='Quote']").fill("a quote without its document")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#label-error [role=alert]:has-text('doc_id must be a non-empty string')")
    assert "golden/docs.jsonl, line 1" in page.inner_text("#label-error")
    assert page.is_checked("#pick-1") and page.input_value("#quote-1") == sentence
    assert page.input_value("#grade-1") == "3"
    page.screenshot(path=str(tmp_path / "label-error.png"))
    page.locator("#extra-sources button:has-text('Remove')").click()
    reference = "The file fails alone, with a reason in the report; the rest of the job goes on."
    page.fill("#label-answer", reference)
    assert page.is_checked("#use-answer")  # a reference typed is meant to be kept
    page.click("#label-save")
    page.wait_for_selector("#label-done .ok")
    case_id = f"q-{query_id[:12]}"
    assert case_id in page.inner_text("#label-done")

    # On the server: in the collection's golden set, loadable by the audit's loader.
    listed = live.http.get("/v1/golden/docs", headers=docs_key).json()
    rows = listed["rows"]
    assert [r["id"] for r in rows] == [case_id] and listed["error"] is None
    assert rows[0]["expected"] == [{"doc_id": "docs/ingesting.md", "grade": 3, "quote": sentence}]
    assert rows[0]["source"]["query_id"] == query_id and rows[0]["answer"] == reference

    # Audit the new golden set from the UI and watch it finish; the case is there.
    page.click("#audit-now")
    page.wait_for_selector("#audit-summary", timeout=120_000)
    page.wait_for_selector(f"#audit-cases tr[data-case-id='{case_id}']")
    row = page.locator(f"#audit-cases tr[data-case-id='{case_id}']")
    assert "answered_well" in row.inner_text() or "retrieved" in row.inner_text(), row.inner_text()
    assert page.locator("#plot-recall svg").count() == 1 and page.locator("#plot-verdicts svg rect").count() >= 1
    assert page.locator("#verdict-counts tr").count() >= 1
    lost_rows = page.locator("#where-lost tr").count()
    assert page.locator("main h2:text-is('Where lost')").count() == (1 if lost_rows else 0)  # no empty heading
    assert_readable_plots(page)
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)

    # The case: question, each expected source with its ranks, the contexts with the cited sentence marked.
    row.locator("a").first.click()
    page.wait_for_selector("#case-question")
    assert page.inner_text("#case-question") == QUESTION
    assert "docs/ingesting.md" in page.inner_text("#case-expected")
    assert "shown at #" in page.inner_text("#case-expected")
    assert page.locator(".passage[data-rank='1'] mark.cited").count() >= 1
    assert page.locator(".passage[data-rank='1'] .cited-badge").is_visible()
    assert page.locator("main").inner_text().count("[object") == 0
    page.screenshot(path=str(tmp_path / "case.png"), full_page=True)

    # A second audit (retrieval only) against the first as its baseline: paired cases, verdicts not compared.
    first_audit = page.url.split("#/case/")[1].split("/")[0]
    page.click("nav a[data-page=audits]")
    page.wait_for_selector("#start-audit-docs")
    assert "1 labelled cases" in page.inner_text("main")
    page.uncheck("#generate-docs")
    page.click("#start-audit-docs")
    page.wait_for_selector("#audit-summary", timeout=120_000)
    page.select_option("#baseline", first_audit)
    page.wait_for_selector("#comparison")
    assert "1 paired cases" in page.inner_text("#comparison")
    # a retrieval-only audit against a generating one: the settings differ, verdicts are not compared
    assert "Not comparable: verdicts not compared: generate False vs True" in page.inner_text("#comparison")
    assert "No verdict flipped" in page.inner_text("#comparison")
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

    # Labelling it again: the page says which case labels it, before anything is saved.
    page.goto(f"{live.url}/ui#/label/q/{query_id}")
    page.wait_for_selector("#label-labelled")
    assert case_id in page.inner_text("#label-labelled")
    # Labelled anyway (another id): the feedback's document, offered again, is the picked passage's, so it is
    # listed once (twice, with grades 3 and 1, the set would refuse the case).
    assert page.locator("#extra-sources input[aria-label='Document id']").input_value() == "docs/ingesting.md"
    page.click("h1")
    page.keyboard.press("1")
    page.select_option("#grade-1", "3")
    page.fill("#label-id", "pdf-again")
    page.click("#label-save")
    page.wait_for_selector("#label-done .ok")
    again = live.http.get("/v1/golden/docs/cases/pdf-again", headers=docs_key).json()["case"]
    assert [(e["doc_id"], e["grade"]) for e in again["expected"]] == [("docs/ingesting.md", 3)]
    assert "span" in again["expected"][0] and "answer" not in again

    # The golden set page: the case listed; an edit refused inline (an unknown document), then saved.
    page.click("nav a[data-page=golden]")
    row = page.locator(f"#golden-cases tr[data-case-id='{case_id}']")
    row.wait_for()
    assert sentence in row.inner_text()
    row.locator("a:has-text('Edit')").click()
    page.wait_for_selector("#case-form")
    assert page.input_value("#case-question-input") == QUESTION
    doc_in = page.locator("#case-sources input[aria-label='Document id']")
    doc_in.fill("docs/no-such-page.md")
    page.click("#case-save")
    page.wait_for_selector("#case-error [role=alert]:has-text('label_not_found')")
    doc_in.fill("docs/ingesting.md")
    page.select_option("#case-sources select[aria-label='Grade']", "2")
    page.screenshot(path=str(tmp_path / "golden-edit.png"), full_page=True)
    page.click("#case-save")
    page.wait_for_selector("#golden-status .ok:has-text('Saved case')")
    got = live.http.get(f"/v1/golden/docs/cases/{case_id}", headers=docs_key).json()
    assert got["version"] == 2 and got["case"]["expected"] == [
        {"doc_id": "docs/ingesting.md", "grade": 2, "quote": sentence}
    ]
    assert got["case"]["answer"] == reference

    # Delete it: gone; the history has the delete; undo it from the history: the case is back, as edited.
    page.locator(f"#golden-cases tr[data-case-id='{case_id}'] button.delete-case").click()
    page.wait_for_selector("#golden-status .ok:has-text('Deleted case')")
    page.wait_for_selector(f"#golden-cases tr[data-case-id='{case_id}']", state="detached")
    assert live.http.get(f"/v1/golden/docs/cases/{case_id}", headers=docs_key).status_code == 404
    # the list and the history redraw side by side: wait for the history's newest row to be the delete
    page.wait_for_selector("#golden-history tbody tr:first-child[data-action='delete']")
    page.locator("#golden-history tr[data-action='delete'] button.undo").click()
    page.wait_for_selector(f"#golden-cases tr[data-case-id='{case_id}']")
    page.wait_for_selector("#golden-history tr[data-action='delete']:has-text('undone by')")
    back = live.http.get(f"/v1/golden/docs/cases/{case_id}", headers=docs_key).json()
    assert back["case"] == got["case"]
    page.screenshot(path=str(tmp_path / "golden.png"), full_page=True)

    # The logged query is now labelled and leaves the candidates.
    page.goto(f"{live.url}/ui#/candidates")
    page.wait_for_selector("main h1:has-text('To label')")
    assert page.locator(f"tr[data-query-id='{query_id}']").count() == 0

    # Phone width: no page scrolls sideways, the chart labels stay readable.
    page.set_viewport_size(PHONE)
    pages = [
        ("queries", f"#queries tr[data-query-id='{query_id}']"),
        (f"query/{query_id}", "#query-contexts .passage"),
        (f"label/q/{query_id}", "#label-form"),
        ("golden", f"#golden-cases tr[data-case-id='{case_id}']"),
        ("audits", "#audit-list"),
        (f"audit/{first_audit}", "#audit-summary"),
        (f"case/{first_audit}/{case_id}", "#case-question"),
    ]
    for route, ready in pages:
        page.goto(f"{live.url}/ui#/{route}")
        page.wait_for_selector(ready)
        assert_fits(page, route)
        if route.startswith("audit/"):
            assert_readable_plots(page)
            page.screenshot(path=str(tmp_path / "phone-audit.png"), full_page=True)
        elif route.startswith("label/"):
            assert page.locator("label[for=unanswerable]").evaluate(ONE_BOX_JS), "the Unanswerable box overflows"
            page.screenshot(path=str(tmp_path / "phone-label.png"))
    page.goto(f"{live.url}/ui#/queries")
    page.wait_for_selector(f"#queries tr[data-query-id='{query_id}']")
    page.fill("#ask-question", QUESTION)
    page.click("#ask-form button[type=submit]")
    page.wait_for_selector("#ask-sources")
    assert_fits(page, "the ask result")
    page.screenshot(path=str(tmp_path / "phone.png"))

    assert_clean(foreign, errors)
    shots = ("querylog", "ask", "label", "label-error", "audit", "case", "compare", "golden-edit", "golden", "phone")
    for name in (*shots, "phone-label", "phone-audit"):
        check_screenshot(tmp_path / f"{name}.png")
    for name in ("ask", "label", "audit", "case", "golden"):  # the README's pictures
        keep(tmp_path / f"{name}.png")
    page.close()


def test_experiments_panel(live, browser, tmp_path):
    """Experiments: the prefilled variants (baseline, top_k, fusion) and one of top_k 1 on a pasted golden set ->
    the table; a case top_k 1 breaks (its source ranks below 1) opens as each variant ran it."""
    # A case whose source the service ranks below the first place, at its first document other than the top one:
    # the baseline retrieves it, top_k = 1 cannot.
    got = live.http.post("/v1/query", json={"question": QUESTION, "generate": False}, headers={"X-API-Key": "docs-key"})
    ranked = [c["doc_id"] for c in got.json()["contexts"]]
    second = next(d for d in ranked if d != ranked[0])
    page, foreign, errors = watched_page(browser, live.url)
    page.goto(f"{live.url}/ui")
    page.fill("#api-key", "docs-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#ask-form")

    page.click("nav a[data-page=experiments]")
    page.wait_for_selector("#experiment-form")
    variants = [page.input_value(f"#exp-variant-{i}") for i in (1, 2, 3)]
    assert 'name = "baseline"' in variants[0] and "top_k = 10" in variants[1] and 'fusion = "rrf"' in variants[2]
    cases = [
        {"id": "pdf", "question": QUESTION, "expected": [{"doc_id": "docs/ingesting.md"}]},
        {"id": "golden", "question": "What is a golden set?", "expected": [{"doc_id": "docs/evaluation.md"}]},
        {"id": "second", "question": QUESTION, "expected": [{"doc_id": second}]},
    ]
    page.fill("#exp-golden", "\n".join(json.dumps(c) for c in cases))
    # A bad variant is refused inline with the server's code; fixed, the experiment runs.
    page.fill("#exp-variant-3", "[retrieval]\ntopk = 3\n")
    page.click("#exp-run")
    page.wait_for_selector("#exp-error [role=alert]:has-text('invalid_variant')")
    assert "variants[2]" in page.inner_text("#exp-error")
    page.fill("#exp-variant-3", variants[2])
    page.click("#exp-add-variant")
    page.fill("#exp-variant-4", 'name = "top1"\n[retrieval]\ntop_k = 1\n')
    page.screenshot(path=str(tmp_path / "experiment-form.png"), full_page=True)
    page.click("#exp-run")
    page.wait_for_selector("#experiment-table", timeout=120_000)
    head = page.inner_text("#experiment-table thead")
    assert "baseline (baseline)" in head and "top10" in head and "rrf-k60" in head and "winner" in head
    row = page.locator("#experiment-table tr[data-metric='ndcg@10']")
    winner = row.locator("td.winner").inner_text()
    assert winner in ("baseline", "top10", "rrf-k60", "inconclusive"), winner
    assert page.locator("#experiment-variants tr[data-variant]").count() == 4
    assert "top10 vs baseline" in page.inner_text("#experiment-flipped")
    assert "3 cases" in page.inner_text("#experiment-summary")
    page.screenshot(path=str(tmp_path / "experiment.png"), full_page=True)
    experiment_url = page.url

    # Phone width: the experiment's table is a card per metric, no scrolling sideways, in its box or the page.
    page.set_viewport_size(PHONE)
    assert_fits(page, "the experiment")
    assert page.locator("#experiment-table").evaluate(ONE_BOX_JS), "the experiment table overflows"
    assert page.locator("#experiment-table").evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
    assert page.locator("#experiment-table td[data-label='top1']").first.is_visible()
    page.screenshot(path=str(tmp_path / "phone-experiment.png"), full_page=True)

    # The flipped case is a link: the case as top1 ran it (its source lost below the cut), then as the baseline did.
    flip = page.locator("#experiment-flipped li[data-case-id='second'] a.case-link")
    assert "retrieved → retrieval_miss" in page.inner_text("#experiment-flipped li[data-case-id='second']")
    flip.click()
    page.wait_for_selector("#case-question")
    assert page.inner_text("#case-question") == QUESTION and "/case/top1/second" in page.url
    assert second in page.inner_text("#case-expected") and "lost" in page.inner_text("#case-expected")
    assert_fits(page, "an experiment's case")
    page.locator("#case-variants a:text-is('baseline')").click()
    page.wait_for_selector("#case-variants b:text-is('baseline')")
    assert "shown at #" in page.inner_text("#case-expected")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(tmp_path / "experiment-case.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.click("nav a[data-page=experiments]")
    page.wait_for_selector("#experiment-list")
    assert_fits(page, "experiments")
    page.goto(experiment_url)

    assert_clean(foreign, errors)
    for name in ("experiment-form", "experiment", "phone-experiment", "experiment-case"):
        check_screenshot(tmp_path / f"{name}.png")
    keep(tmp_path / "experiment.png")
    page.close()


def test_query_page_feedback_and_sign_out(live, browser):
    """A logged query's page: the cited contexts marked; feedback saved replaces "None yet." with the list; signing
    out hides the button again."""
    asked = live.http.post("/v1/query", json={"question": QUESTION}, headers={"X-API-Key": "docs-key"}).json()
    cited = sorted(c["number"] for c in asked["citations"])
    assert cited
    page, foreign, errors = watched_page(browser, live.url)
    page.goto(f"{live.url}/ui")
    page.fill("#api-key", "docs-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#ask-form")
    page.goto(f"{live.url}/ui#/query/{asked['query_id']}")
    page.wait_for_selector("#query-contexts .passage")
    ranks = "els => els.map((e) => e.dataset.rank)"
    badged = page.locator("#query-contexts .passage:has(.cited-badge)").evaluate_all(ranks)
    assert sorted(int(x) for x in badged) == cited
    assert page.locator("#query-sources > li").count() == len(cited)
    assert page.inner_text("#feedback-list") == "None yet."
    page.fill("#fb-comment", "misses the report")
    page.click("button:has-text('▼ Wrong')")
    page.wait_for_selector("main .ok:has-text('Feedback saved.')")
    page.wait_for_selector("#feedback-list li:has-text('misses the report')")
    assert "None yet." not in page.inner_text("main")

    page.click("#signout")
    page.wait_for_selector("#signin-form")
    assert page.is_hidden("#signout")
    assert_clean(foreign, errors)
    page.close()
