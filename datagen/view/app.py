"""The `datagen view` web app: Starlette routes over `datagen.view.data`, pages rendered by Jinja2 on the server.

Safe by default: the server listens on loopback unless told otherwise (datagen.cli), the Host header must name
the address it serves (no DNS rebinding), every page is autoescaped, a change needs the session's token (a form
field no other site can read, so no cross-site request can forge it), pages forbid framing and inline script,
and API keys and the configured `api_base`s are blanked out of every text shown.
"""

import hmac
import secrets
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

from datagen.errors import DatagenError
from datagen.util.redaction import REDACTED, redact
from datagen.dataset.review import VERDICTS, checked_review
from datagen.samples import Sample
from datagen.view import data
from datagen.view.diff import word_diff

HERE = Path(__file__).parent
# Security headers on every response: no framing (clickjacking), scripts and styles from this server only.
# Inline style attributes are allowed (the bar charts' widths); inline script is not.
_HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                      "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@dataclass
class Viewed:
    """One source and what the pages need to show it: the criteria its samples are rated on ({name: what a 5
    means}) and, for a run, its price per model (cost.Price or None)."""

    source: data.Source
    criteria: dict[str, str] = field(default_factory=dict)
    prices: dict = field(default_factory=dict)


def create_app(viewed: list[Viewed], *, hosts: list[str], secrets_shown: list[str] = (),
               token: str | None = None) -> Starlette:
    """The app over `viewed` sources (at least one). `hosts`: the Host header values accepted (the address the
    server listens on, e.g. ["127.0.0.1", "localhost"]); `secrets_shown`: texts to blank out of every page
    besides API keys (the configured api_bases); `token`: the session's token for changes (default: a new random
    one)."""
    if not viewed:
        raise DatagenError("nothing to view: give a run folder or an evaluation")
    token = token or secrets.token_urlsafe(32)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=env)
    hidden = sorted({s for s in secrets_shown if s and len(s) >= 8}, key=len, reverse=True)

    def shown(text) -> str:
        text = redact(None if text is None else str(text))
        for secret in hidden:
            text = text.replace(secret, REDACTED)
        return text or ""

    templates.env.filters["shown"] = shown
    templates.env.globals.update(token=token, runs=[v.source for v in viewed], verdicts=VERDICTS)

    def page(request: Request, name: str, status: int = 200, **context) -> Response:
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(_HEADERS)
        return response

    def source_of(request: Request) -> tuple[int, Viewed]:
        number = request.path_params["run"]
        if not 0 <= number < len(viewed):
            raise HTTPException(404, f"no run number {number}")
        return number, viewed[number]

    def page_number(value: str | None) -> int:
        try:
            number = int(value or 1)
        except ValueError:
            number = 0
        if not 1 <= number <= 10**9:
            raise HTTPException(400, f"page must be a whole number from 1, got {value!r}")
        return number

    def query_of(request: Request, gate: dict[str, float] | None = None,
                 metrics: list[str] | None = None) -> data.Query:
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
        if metrics is not None and metric and metric not in metrics:
            raise HTTPException(400, f"no sample is scored on {metric!r} (scored: {', '.join(metrics) or 'none'})")
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

    templates.env.globals["list_params"] = list_params

    async def index(request: Request) -> Response:
        if len(viewed) == 1:
            return RedirectResponse("/r/0", status_code=303)
        return page(request, "index.html", overviews=[(n, v.source, data.overview(v.source))
                                                      for n, v in enumerate(viewed)])

    async def run_page(request: Request) -> Response:
        number, item = source_of(request)
        summary = data.overview(item.source)
        costs = {model: (item.prices.get(model).cost(u["prompt_tokens"], u["completion_tokens"])
                         if item.prices.get(model) else None) for model, u in summary["usage"].items()}
        cost = sum(costs.values()) if costs and None not in costs.values() else (0.0 if not costs else None)
        return page(request, "run.html", number=number, source=item.source, summary=summary, costs=costs,
                    cost=cost, bins=data.BINS)

    async def samples(request: Request) -> Response:
        number, item = source_of(request)
        summary = data.overview(item.source)
        query = query_of(request, summary["gate"], summary["metrics"])
        rows, total = data.list_samples(item.source, query)
        return page(request, "samples.html", number=number, source=item.source, query=query, rows=rows,
                    total=total, pages=max(1, -(-total // data.PAGE)), summary=summary,
                    review_states=data.REVIEW_STATES)

    async def failed(request: Request) -> Response:
        number, item = source_of(request)
        query = query_of(request)
        rows, total = data.list_failed(item.source, query.page)
        return page(request, "failed.html", number=number, source=item.source, rows=rows, total=total,
                    query=query, pages=max(1, -(-total // data.PAGE)))

    def detail(item: Viewed, chunk_id: str, index: int | None) -> dict:
        try:
            return data.sample_detail(item.source, chunk_id, index)
        except DatagenError as exc:
            raise HTTPException(404, str(exc)) from None

    async def sample(request: Request) -> Response:
        number, item = source_of(request)
        chunk_id, index = request.path_params["chunk"], request.path_params["index"]
        query = query_of(request, data.gate(item.source))
        found = detail(item, chunk_id, index)
        before, after = data.neighbours(item.source, query, chunk_id, index)
        chosen = found["sample"]
        review = chosen["review"]
        shown_input = review.input if review and review.input is not None else chosen["input"]
        shown_output = review.output if review and review.output is not None else chosen["output"]
        left, right = word_diff(shown(shown_input), shown(shown_output))
        return page(request, "sample.html", number=number, item=item, source=item.source, found=found,
                    sample=chosen, review=review, diff=(left, right), query=query, before=before, after=after,
                    saved=request.query_params.get("saved"))

    async def chunk(request: Request) -> Response:
        number, item = source_of(request)
        found = detail(item, request.path_params["chunk"], None)
        return page(request, "chunk.html", number=number, source=item.source, found=found)

    async def save_review(request: Request) -> Response:
        number, item = source_of(request)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("token", "")), token):
            raise HTTPException(403, "this form is not from this datagen view session (reload the page)")
        chunk_id, index = request.path_params["chunk"], request.path_params["index"]
        found = detail(item, chunk_id, index)
        chosen = found["sample"]
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
                generated=Sample(shown(chosen["input"]), shown(chosen["output"])), criteria=item.criteria)
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

    async def compare(request: Request) -> Response:
        params = request.query_params
        try:
            first, second = int(params.get("a", 0)), int(params.get("b", 1))
        except ValueError:
            raise HTTPException(400, "a and b must be run numbers") from None
        number = page_number(params.get("page"))
        if not (0 <= first < len(viewed) and 0 <= second < len(viewed)) or first == second:
            raise HTTPException(400, "compare two different runs: a and b are their numbers on the front page")
        metrics = sorted(set(data.overview(viewed[first].source)["metrics"])
                         | set(data.overview(viewed[second].source)["metrics"]))
        metric = params.get("metric") or ("composite" if "composite" in metrics else (metrics or [""])[0])
        if metric and metric not in metrics:
            raise HTTPException(400, f"no sample is scored on {metric!r} (scored: {', '.join(metrics) or 'none'})")
        rows, total = data.compare(viewed[first].source, viewed[second].source, metric, number)
        return page(request, "compare.html", a=first, b=second, first=viewed[first].source,
                    second=viewed[second].source, metric=metric, metrics=metrics, rows=rows, total=total,
                    page_number=number, pages=max(1, -(-total // data.PAGE)))

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return page(request, "error.html", status=exc.status_code, message=exc.detail)

    routes = [
        Route("/", index),
        Route("/r/{run:int}", run_page),
        Route("/r/{run:int}/samples", samples),
        Route("/r/{run:int}/failed", failed),
        Route("/r/{run:int}/s/{chunk}/{index:int}", sample),
        Route("/r/{run:int}/s/{chunk}/{index:int}/review", save_review, methods=["POST"]),
        Route("/r/{run:int}/c/{chunk}", chunk),
        Route("/compare", compare),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found},
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
