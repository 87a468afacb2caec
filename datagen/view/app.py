"""The `datagen view` web app: Starlette routes over `datagen.view.data`, pages rendered by Jinja2 on the server.

Safe by default: the server listens on loopback unless told otherwise (datagen.cli), the Host header must name
the address it serves (no DNS rebinding), every page is autoescaped, a change needs the session's token (a form
field no other site can read, so no cross-site request can forge it), pages forbid framing and inline script,
and API keys and the configured `api_base`s are blanked out of every text shown.

`create_app` builds the app; `Pages` holds what its pages share (the sources, the session's token, the texts to
blank out, the templates) and has one handler method per route; the functions between them read and write the
sample list's query string.
"""

import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import jinja2

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import datagen.view.data as data
from datagen.dataset import VERDICTS, checked_review
from datagen.errors import DatagenError
from datagen.samples import Sample
from datagen.util import REDACTED, redact
from datagen.view.diff import word_diff
from datagen.view.model_eval import evaluation_file, evaluation_view
from datagen.view.quality import quality_page, sample_flag

HERE = Path(__file__).parent
# Security headers on every response: no framing (clickjacking), scripts and styles from this server only.
# Inline style attributes are allowed (the bar charts' widths); inline script is not.
_HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@dataclass
class Viewed:
    """One source and what the pages need to show it.

    Args:
        source: The run or evaluation (datagen.view.data.Source).
        criteria: What its samples are rated on, {name: what a 5 means}.
        prices: For a run, the price of each of its models ({model: datagen.runs.cost.Price or None}).
    """

    source: data.Source
    criteria: dict[str, str] = field(default_factory=dict)
    prices: dict = field(default_factory=dict)


def create_app(viewed: list[Viewed], *, hosts: list[str], secrets_shown: list[str] = (),
               token: str | None = None) -> Starlette:
    """The web app over `viewed` sources.

    Args:
        viewed: The sources to show, at least one; the pages number them in this order.
        hosts: The Host header values accepted: the address the server listens on, e.g.
            ["127.0.0.1", "localhost"] (any other is refused, against DNS rebinding).
        secrets_shown: Texts to blank out of every page besides API keys (the configured api_bases).
        token: The session's token that every change must send (default: a new random one).

    Returns:
        The Starlette app, to serve with uvicorn (datagen.view.server.serve) or a test client.

    Raises:
        DatagenError: `viewed` is empty.
    """
    if not viewed:
        raise DatagenError("nothing to view: give a run folder or an evaluation")
    pages = Pages(viewed, secrets_shown, token or secrets.token_urlsafe(32))
    return Starlette(routes=pages.routes(), exception_handlers={HTTPException: pages.error},
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])


def _hidden_texts(texts: Iterable[str]) -> list[str]:
    """The texts to blank out of pages: those of 8 characters or more (a shorter one would blank common words, and
    is no secret), longest first (a secret that contains another is blanked whole)."""
    return sorted({s for s in texts if s and len(s) >= 8}, key=len, reverse=True)


# --- the sample list's query string ------------------------------------------------------------------------------

def page_number(value: str | None) -> int:
    """The page asked for (from 1; none given: 1); refused (400) unless a whole number from 1 to 10**9."""
    try:
        number = int(value or 1)
    except ValueError:
        number = 0
    if not 1 <= number <= 10**9:
        raise HTTPException(400, f"page must be a whole number from 1, got {value!r}")
    return number


def page_count(total: int) -> int:
    """How many pages of data.PAGE rows `total` rows fill (at least one, shown empty)."""
    return max(1, -(-total // data.PAGE))


def check_metric(metric: str, metrics: list[str]) -> None:
    """Refuse (400) a `metric` (when given) that no sample is scored on: only `metrics` are."""
    if metric and metric not in metrics:
        raise HTTPException(400, f"no sample is scored on {metric!r} (scored: {', '.join(metrics) or 'none'})")


def query_of(request: Request, gate: dict[str, float] | None = None, metrics: list[str] | None = None) -> data.Query:
    """The list filters in the request's query string, refused (400) when malformed or naming a metric not
    in `metrics` (when given); gate=1 asks for the samples below `gate` (the run's)."""
    params = request.query_params
    below = dict(gate or {}) if params.get("gate") == "1" else {}
    for pair in params.getlist("below"):
        metric, _, bar = pair.partition("=")
        try:
            below[metric] = float(bar)
        except ValueError:
            raise HTTPException(400, f"below={pair!r}: expected METRIC=VALUE") from None
    number = page_number(params.get("page"))
    review, order, metric = params.get("review", ""), params.get("order", ""), params.get("metric", "")
    if review and review not in data.REVIEW_STATES:
        raise HTTPException(400, f"review filter must be one of {', '.join(data.REVIEW_STATES)}")
    if order not in ("", "worst", "best"):
        raise HTTPException(400, "order must be worst or best (or none: corpus order)")
    if metrics is not None:
        check_metric(metric, metrics)
    return data.Query(q=params.get("q", ""), source=params.get("source", ""), review=review,
                      metric=metric, order=order, below=below, page=number,
                      gate=params.get("gate") == "1")


def list_params(query: data.Query, **changes) -> str:
    """The list's query string, with `changes` (page, ...): links keep the reviewer's filters."""
    values = {"q": query.q, "source": query.source, "review": query.review, "metric": query.metric,
              "order": query.order, "page": query.page, **changes}
    pairs = [(k, v) for k, v in values.items() if v not in ("", None) and not (k == "page" and v == 1)]
    if query.gate:
        pairs.append(("gate", "1"))
    else:
        pairs += [("below", f"{metric}={bar:g}") for metric, bar in query.below.items()]
    return urlencode(pairs)


# --- the pages -----------------------------------------------------------------------------------------------

class Pages:
    """What the pages of one view session share, and a handler method per route (each takes the request).

    Args:
        viewed: The sources shown, numbered in this order (the {run} of the URLs).
        secrets_shown: Texts to blank out of every page besides API keys (those of 8 characters or more).
        token: The session's token that every change must send.
    """

    def __init__(self, viewed: list[Viewed], secrets_shown: list[str], token: str):
        self.viewed = viewed
        self.token = token
        self.hidden = _hidden_texts(secrets_shown)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
        env.filters["shown"] = self.shown
        env.globals.update(token=token, runs=[v.source for v in viewed], verdicts=VERDICTS,
                           list_params=list_params)
        self.templates = Jinja2Templates(env=env)

    def routes(self) -> list[Route | Mount]:
        """The app's routes: each URL and its handler."""
        return [
            Route("/", self.index),
            Route("/r/{run:int}", self.run_page),
            Route("/r/{run:int}/samples", self.samples),
            Route("/r/{run:int}/failed", self.failed),
            Route("/r/{run:int}/quality", self.quality),
            Route("/r/{run:int}/s/{chunk}/{index:int}", self.sample),
            Route("/r/{run:int}/s/{chunk}/{index:int}/review", self.save_review, methods=["POST"]),
            Route("/r/{run:int}/c/{chunk}", self.chunk),
            Route("/r/{run:int}/model-eval", self.model_eval),
            Route("/compare", self.compare),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]

    def shown(self, text, also: Sequence[str] = ()) -> str:
        """`text` as a page may show it: API keys, the session's hidden texts and `also` (a page's own: the servers
        of the models a run's evaluation asked) blanked out (None: "")."""
        text = redact(None if text is None else str(text))
        for secret in _hidden_texts([*self.hidden, *also]) if also else self.hidden:
            text = text.replace(secret, REDACTED)
        return text or ""

    def page(self, request: Request, name: str, status: int = 200, **context) -> Response:
        """The template `name` rendered with `context`, with the security headers."""
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(_HEADERS)
        return response

    def source_of(self, request: Request) -> tuple[int, Viewed]:
        """The number and the source the URL's {run} names; 404 for a number no source has."""
        number = request.path_params["run"]
        if not 0 <= number < len(self.viewed):
            raise HTTPException(404, f"no run number {number}")
        return number, self.viewed[number]

    @staticmethod
    def detail(item: Viewed, chunk_id: str, index: int | None) -> dict:
        """data.sample_detail of a chunk (and one of its samples); 404 for one the source does not have."""
        try:
            return data.sample_detail(item.source, chunk_id, index)
        except DatagenError as exc:
            raise HTTPException(404, str(exc)) from None

    async def index(self, request: Request) -> Response:
        """/: the sources side by side, or the one source's page when there is only one."""
        if len(self.viewed) == 1:
            return RedirectResponse("/r/0", status_code=303)
        return self.page(request, "index.html", overviews=[(n, v.source, data.overview(v.source))
                                                           for n, v in enumerate(self.viewed)])

    async def run_page(self, request: Request) -> Response:
        """/r/{run}: a source's counts, failures, score histograms, and tokens and cost by model."""
        number, item = self.source_of(request)
        summary = data.overview(item.source)
        costs = {model: (item.prices.get(model).cost(u["prompt_tokens"], u["completion_tokens"])
                         if item.prices.get(model) else None) for model, u in summary["usage"].items()}
        cost = sum(costs.values()) if costs and None not in costs.values() else (0.0 if not costs else None)
        model_eval = evaluation_file(item.source)
        return self.page(request, "run.html", number=number, source=item.source, summary=summary, costs=costs,
                         cost=cost, bins=data.BINS, model_eval=model_eval is not None and model_eval.is_file())

    async def samples(self, request: Request) -> Response:
        """/r/{run}/samples: a page of the sample list, filtered and ordered as its query string says."""
        number, item = self.source_of(request)
        summary = data.overview(item.source)
        query = query_of(request, summary["gate"], summary["metrics"])
        rows, total = data.list_samples(item.source, query)
        return self.page(request, "samples.html", number=number, source=item.source, query=query, rows=rows,
                         total=total, pages=page_count(total), summary=summary, review_states=data.REVIEW_STATES)

    async def failed(self, request: Request) -> Response:
        """/r/{run}/failed: a page of the failed chunks."""
        number, item = self.source_of(request)
        query = query_of(request)
        rows, total = data.list_failed(item.source, query.page)
        return self.page(request, "failed.html", number=number, source=item.source, rows=rows, total=total,
                         query=query, pages=page_count(total))

    async def sample(self, request: Request) -> Response:
        """/r/{run}/s/{chunk}/{index}: one sample (as reviewed: a correction shown in its place) with a word diff,
        its scores, its chunk's steps and LM calls, the review form, and its neighbours in the list."""
        number, item = self.source_of(request)
        chunk_id, index = request.path_params["chunk"], request.path_params["index"]
        query = query_of(request, data.gate(item.source))
        found = self.detail(item, chunk_id, index)
        before, after = data.neighbours(item.source, query, chunk_id, index)
        chosen = found["sample"]
        review = chosen["review"]
        shown_input = review.input if review and review.input is not None else chosen["input"]
        shown_output = review.output if review and review.output is not None else chosen["output"]
        left, right = word_diff(self.shown(shown_input), self.shown(shown_output))
        return self.page(request, "sample.html", number=number, item=item, source=item.source, found=found,
                         sample=chosen, review=review, diff=(left, right), query=query, before=before, after=after,
                         saved=request.query_params.get("saved"), flag=sample_flag(item.source, chunk_id, index))

    async def quality(self, request: Request) -> Response:
        """/r/{run}/quality: the run's dataset-level quality as last recorded (datagen.view.quality): each
        near-duplicate beside the sample it repeats, a word diff of the two texts, the contaminated samples, and
        each field's diversity beside the source chunks'; a page of each list (?duplicates=N, ?contaminated=N). A
        run not measured for its samples is said so, with the command that measures it; an evaluation has none
        (404)."""
        number, item = self.source_of(request)
        if not item.source.writable:
            raise HTTPException(404, f"{item.source.name}: an evaluation has no dataset quality (datagen quality "
                                     "measures a run folder's)")
        asked = {name: page_number(request.query_params.get(name)) for name in ("duplicates", "contaminated")}
        found = quality_page(item.source, **asked)
        for row in found.get("duplicates", []):
            row["diff"] = word_diff(self.shown(row["original"]), self.shown(row["text"]))
        pages = {"duplicates": page_count(found.get("duplicate_rows", 0)),
                 "contaminated": page_count(found.get("contaminated_rows", 0))}
        return self.page(request, "quality.html", number=number, source=item.source, found=found, asked=asked,
                         pages=pages)

    async def chunk(self, request: Request) -> Response:
        """/r/{run}/c/{chunk}: a chunk's text, its samples, and its steps and LM calls (or its failure)."""
        number, item = self.source_of(request)
        found = self.detail(item, request.path_params["chunk"], None)
        return self.page(request, "chunk.html", number=number, source=item.source, found=found)

    async def model_eval(self, request: Request) -> Response:
        """/r/{run}/model-eval: the run's model evaluation (`datagen eval-model`): the models, the pairs of them, and
        a page of the held-out samples, each model's answer beside the reference; instead, one line that says why
        when the run has none (404) or its eval.json cannot be read."""
        number, item = self.source_of(request)
        page = page_number(request.query_params.get("page"))
        file = evaluation_file(item.source)
        evaluation, problem, status = None, None, 200
        if file is None or not file.is_file():
            problem, status = "this run has no model evaluation: datagen eval-model writes one", 404
        else:
            try:
                evaluation = evaluation_view(file, self.shown, page)
            except DatagenError as exc:
                problem = self.shown(str(exc))
        return self.page(request, "model_eval.html", status, number=number, source=item.source,
                         evaluation=evaluation, problem=problem, page_number=page,
                         pages=page_count(evaluation["total"] if evaluation else 0))

    async def save_review(self, request: Request) -> Response:
        """POST /r/{run}/s/{chunk}/{index}/review: the review form stored (403 without the session's token, 400
        for a review datagen.dataset.review.checked_review refuses), then back to the sample, or on to the next
        one in the list when the form asks (next=1)."""
        number, item = self.source_of(request)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("token", "")), self.token):
            raise HTTPException(403, "this form is not from this datagen view session (reload the page)")
        chunk_id, index = request.path_params["chunk"], request.path_params["index"]
        chosen = self.detail(item, chunk_id, index)["sample"]
        # The verdict buttons send one (an empty one clears it); a form sent by another button (drop the
        # correction) sends none, and keeps the verdict the sample had.
        kept = chosen["review"].verdict if chosen["review"] else None
        verdict = (form.get("verdict") if "verdict" in form else kept) or None
        drop = form.get("drop_correction") == "1"
        try:
            review = checked_review(
                chunk_id, index, verdict=verdict, comment=form.get("comment"),
                ratings={name[len("rating."):]: value for name, value in form.items() if name.startswith("rating.")},
                corrected_input=None if drop else form.get("input"), corrected_output=None if drop else form.get("output"),
                # As the form showed it, keys blanked out: an unedited form is no correction, and an edited one
                # keeps the blank (a key has no place in a training sample).
                generated=Sample(self.shown(chosen["input"]), self.shown(chosen["output"])), criteria=item.criteria)
            with item.source.store() as store:
                store.set_review(review)
        except DatagenError as exc:
            raise HTTPException(400, str(exc)) from None
        query = query_of(request, data.gate(item.source))
        target = (chunk_id, index)
        if form.get("next") == "1":
            target = data.neighbours(item.source, query, chunk_id, index)[1] or target
        return RedirectResponse(f"/r/{number}/s/{target[0]}/{target[1]}?{list_params(query, saved=1)}",
                                status_code=303)

    async def compare(self, request: Request) -> Response:
        """/compare?a=&b=: the samples two sources share, side by side, largest drop in a metric first."""
        params = request.query_params
        try:
            first, second = int(params.get("a", 0)), int(params.get("b", 1))
        except ValueError:
            raise HTTPException(400, "a and b must be run numbers") from None
        number = page_number(params.get("page"))
        if not (0 <= first < len(self.viewed) and 0 <= second < len(self.viewed)) or first == second:
            raise HTTPException(400, "compare two different runs: a and b are their numbers on the front page")
        sources = self.viewed[first].source, self.viewed[second].source
        metrics = sorted(set(data.overview(sources[0])["metrics"]) | set(data.overview(sources[1])["metrics"]))
        metric = params.get("metric") or ("composite" if "composite" in metrics else (metrics or [""])[0])
        check_metric(metric, metrics)
        rows, total = data.compare(*sources, metric, number)
        return self.page(request, "compare.html", a=first, b=second, first=sources[0], second=sources[1],
                         metric=metric, metrics=metrics, rows=rows, total=total, page_number=number,
                         pages=page_count(total))

    async def error(self, request: Request, exc: HTTPException) -> Response:
        """Any refusal (400, 403, 404, ...) as a page that says why, with the refusal's status."""
        return self.page(request, "error.html", status=exc.status_code, message=exc.detail)
