"""Runs: generating a dataset from chunks (threads, Ray actors or a provider's batch API), the spend cap, the run
summary and inspection."""
