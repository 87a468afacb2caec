"""`datagen view`: a local web app to look at runs, review samples and compare runs (see datagen.view.app)."""
