"""`datagen view`: a local web app to look at runs, review samples and compare runs.

`viewed_sources` opens run folders and evaluations, `check_host` refuses an address other machines can reach
unless allowed, and `serve` runs the app (`create_app`, datagen.view.app) on a socket. Inside: `data` reads the
run store's SQLite for the pages, `diff` is the word diff of a sample against its source, `model_eval` reads a
run's `datagen eval-model` evaluation for its page, `quality` a run's recorded dataset quality (`datagen quality`)
for its page and a flagged sample's, `app` the routes.
"""

from datagen.view.app import Viewed, create_app
from datagen.view.server import check_host, serve, viewed_sources

__all__ = ["Viewed", "check_host", "create_app", "serve", "viewed_sources"]
