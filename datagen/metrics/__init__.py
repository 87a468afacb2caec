"""The reusable metrics: `Score` and the `Metric` shape (base), LLM judges (judges, factual_qa), offline
stylometry and overlap metrics, and the weighted `Composite`. A workspace's metrics/PIPELINE.py chooses and
weighs them (see datagen.metrics.scoring)."""
