"""Runs: generating a dataset from chunks (threads, worker processes, Ray actors or a provider's batch API), the
spend cap, the run summary and inspection.

`datagen.runs.generate` is the module of the `generate` function (`datagen.generate`); this face exports what the
other layers use of runs: the settings and results of a run, the runner, what fits a context window, prices, the
summary and inspection of a run folder.
"""

from datagen.runs.batch import TERMINAL, BatchSummary, JobStatus
from datagen.runs.cluster import RayCluster, ray_module
from datagen.runs.cost import Price, run_prices
from datagen.runs.identity import program_fingerprint
from datagen.runs.inspection import inspect_item, list_failed, list_samples, render, shorten
from datagen.runs.processes import WorkerProcesses
from datagen.runs.runner import drop_reason, run_chunks
from datagen.runs.settings import BatchOptions, Callbacks, Report, RunSettings, RunStatus
from datagen.runs.summary import RunSummary, summarize
from datagen.runs.window import bound_answers

__all__ = ["TERMINAL", "BatchOptions", "BatchSummary", "Callbacks", "JobStatus", "Price", "RayCluster", "Report",
           "RunSettings", "RunStatus", "RunSummary", "WorkerProcesses", "bound_answers", "drop_reason", "inspect_item",
           "list_failed", "list_samples", "program_fingerprint", "ray_module", "render", "run_chunks", "run_prices",
           "shorten", "summarize"]
