"""The run store's layout: its database file's name, its tables, and the meta keys other layers read."""

DB_FILE = "run.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    ord INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    chunk_id TEXT PRIMARY KEY REFERENCES chunks(id), status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    samples TEXT, failure TEXT, message TEXT, seconds REAL, finished_at REAL NOT NULL,
    outputs TEXT,  -- JSON: each pipeline step's outputs (the prediction's fields)
    raw TEXT,      -- the LM's answer when it could not be parsed
    usage TEXT);   -- JSON: {model: {prompt_tokens, completion_tokens, ...}} spent on this chunk, every attempt
CREATE TABLE IF NOT EXISTS scores (  -- metric scores of a done chunk's samples (quality gating, evaluation)
    chunk_id TEXT NOT NULL REFERENCES chunks(id), sample INTEGER NOT NULL, metric TEXT NOT NULL,
    value REAL NOT NULL, feedback TEXT, PRIMARY KEY (chunk_id, sample, metric));
-- datagen view lists samples worst-first by a metric: this walks them in order instead of sorting every sample.
CREATE INDEX IF NOT EXISTS scores_by_metric ON scores (metric, value);
-- What a chunk's latest attempt did, written with its result: each predictor call (step), in order...
CREATE TABLE IF NOT EXISTS steps (
    chunk_id TEXT NOT NULL REFERENCES chunks(id), seq INTEGER NOT NULL,
    step TEXT NOT NULL,  -- the predictor's name in the program ("rephrase"), "judge:METRIC" for a judge's
    inputs TEXT, outputs TEXT,  -- JSON: {field: value}
    error TEXT,  -- what the step raised instead of answering
    PRIMARY KEY (chunk_id, seq));
-- ...and each LM call: the exact messages sent and the raw completion.
CREATE TABLE IF NOT EXISTS calls (
    chunk_id TEXT NOT NULL REFERENCES chunks(id), seq INTEGER NOT NULL,
    step TEXT NOT NULL,  -- the step that made the call (the model's name for a call outside any predictor)
    model TEXT NOT NULL, messages TEXT NOT NULL,  -- JSON: [{role, content}], as the adapter formatted them
    response TEXT,  -- the completion's text (a JSON list when the call asked for several); NULL if it raised
    error TEXT, usage TEXT,  -- JSON: the tokens DSPy counted for this call
    cached INTEGER,  -- 1: DSPy counted no tokens, as for a cache hit; NULL: unknown (calls overlapped)
    seconds REAL, PRIMARY KEY (chunk_id, seq));
-- Provider batch jobs (generate --batch; datagen/runs/batch.py): each LM request a round could not answer yet, keyed by
-- the sha256 of its body (the line's custom_id), with the job that carries it and the answer or error it got...
CREATE TABLE IF NOT EXISTS batch_requests (
    key TEXT PRIMARY KEY, body TEXT NOT NULL,  -- JSON: the chat-completions request body
    job INTEGER REFERENCES batch_jobs(id),  -- NULL: not submitted yet
    answer TEXT,  -- JSON: the chat-completions response body
    error_kind TEXT, error TEXT);  -- batch_failed, batch_expired or batch_cancelled, and the provider's message
-- ...and each job: its row is written before its file is uploaded, the file id after, the batch id after the batch
-- is created (each committed), so that a killed run finds every job it started and submits none twice.
CREATE TABLE IF NOT EXISTS batch_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT, input_file_id TEXT, output_file_id TEXT,
    error_file_id TEXT,
    status TEXT NOT NULL,  -- "new", "uploaded", then the provider's (validating, in_progress, ..., completed)
    requests INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
-- A person's review of a sample (datagen view; datagen/dataset/review.py): the verdict, 1-5 ratings on the pipeline's
-- criteria, a comment, and a correction of the sample's input or output (the generated text stays in results).
CREATE TABLE IF NOT EXISTS reviews (
    chunk_id TEXT NOT NULL REFERENCES chunks(id), sample INTEGER NOT NULL,
    verdict TEXT CHECK (verdict IN ('good', 'bad')),  -- NULL: not rated good or bad (yet)
    ratings TEXT,  -- JSON: {criterion: 1..5}
    comment TEXT,
    input TEXT, output TEXT,  -- the corrected input and output; NULL: as generated
    updated_at REAL NOT NULL, PRIMARY KEY (chunk_id, sample));
-- Requests to each server of a role that has several (a list of api_bases; datagen/lm/servers.py), every attempt of
-- every chunk counted, added up as each chunk's result is committed.
CREATE TABLE IF NOT EXISTS servers (
    role TEXT NOT NULL, model TEXT NOT NULL, api_base TEXT NOT NULL,
    calls INTEGER NOT NULL,  -- requests sent to it
    failures INTEGER NOT NULL,  -- requests that got an error instead of an answer
    last_error TEXT,  -- the latest failure's error, one line (keys redacted)
    PRIMARY KEY (role, model, api_base));
-- The held-out split (datagen/dataset/splits.py): each chunk's split, drawn once and recorded so that a chunk
-- never leaves "train" for "test" (a model trained on the run saw it), and its near-duplicate group.
CREATE TABLE IF NOT EXISTS splits (
    chunk_id TEXT PRIMARY KEY REFERENCES chunks(id),
    split TEXT NOT NULL CHECK (split IN ('train', 'test')),
    grp TEXT NOT NULL,  -- the group's first chunk id: near-duplicates share a group, and a group one split
    why TEXT NOT NULL);  -- what decided it: "drawn", "near-duplicate", "seen by the program", "trained on"
-- The text of train chunks a restarted run (generate --force) dropped: cut at other boundaries, it is still text a
-- model may have trained on, so no chunk like it is held out.
CREATE TABLE IF NOT EXISTS retired (text TEXT PRIMARY KEY);
-- Dataset-level quality (datagen/dataset/screening.py), measured from the samples' text, never an LM call. Near-duplicate
-- pairs of samples by one field, down to the kind's floor so that any threshold above it re-flags without measuring...
CREATE TABLE IF NOT EXISTS near_duplicates (
    field TEXT NOT NULL,  -- "input" or "output"
    kind TEXT NOT NULL,  -- "lexical" (character 5-gram Jaccard) or "semantic" (embedding cosine)
    chunk_id TEXT NOT NULL, sample INTEGER NOT NULL,  -- the earlier sample in the run's order
    other_chunk TEXT NOT NULL, other_sample INTEGER NOT NULL,  -- the later one
    similarity REAL NOT NULL,
    PRIMARY KEY (field, kind, chunk_id, sample, other_chunk, other_sample));
-- ...samples sharing n-grams with protected text (the dev set, the held-out split, evaluation files)...
CREATE TABLE IF NOT EXISTS contamination (
    chunk_id TEXT NOT NULL, sample INTEGER NOT NULL, field TEXT NOT NULL,
    source TEXT NOT NULL,  -- the protected text it shares the most n-grams with
    shared INTEGER NOT NULL, share REAL NOT NULL,  -- how many of them, and their share of that text's
    PRIMARY KEY (chunk_id, sample, field));
-- ...and the sentence embeddings of texts (all-MiniLM-L6-v2, float16), by the sha256 of the text: computed once.
CREATE TABLE IF NOT EXISTS embeddings (text_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""
# The tables every run store has held since the first: a file without one of them is not a run store (one without a
# table added since reads it as empty, see datagen.util.database.open_read_only).
CORE_TABLES = ("meta", "chunks", "results")

# Meta key: the chunk budget the run's chunks were cut at, in tokens.
CHUNK_TOKENS = "max_tokens"
# Meta key: the compiled program's state file the run generated with (absolute), for datagen push.
COMPILED = "compiled"
# Meta key: the --min-score bars of the run's last export ({metric: bar}, JSON).
GATE = "min_scores"
# Meta keys of the held-out split: the rule it was drawn by ({"test_fraction", "by"}, JSON) and a fingerprint of
# the texts the program saw (its dev set and demos), which may not be held out.
SPLIT_RULE = "split_rule"
SPLIT_SEEN = "split_seen"
# Meta key: the run's dataset-level quality (datagen/dataset/screening.py): JSON of what it was measured on (a
# fingerprint of the samples, the protected texts and the settings) and the diversity figures.
QUALITY = "quality"
# Meta key: the system prompt of the run's last `datagen export` with turns (a chat format, hf, --for TRAINER; JSON: a
# string, or null for none), which a model trained on it was given: `datagen eval-model` asks the model with it.
SYSTEM_PROMPT = "system_prompt"
