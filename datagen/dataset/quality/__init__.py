"""Dataset-level quality, measured offline from texts and embeddings (never an LM call): near-duplicate samples,
diversity beside the source chunks, and contamination by protected text (docs/quality.md)."""

from datagen.dataset.quality.contamination import Contamination, NgramIndex, Protected
from datagen.dataset.quality.diversity import (Comparison, Diversity, Opening, collapse, collapsed, compare,
                                               diversity_of)
from datagen.dataset.quality.near_duplicates import (THRESHOLDS, Duplicate, Pair, duplicates, lexical_pairs,
                                                     semantic_pairs)

__all__ = ["Comparison", "Contamination", "Diversity", "Duplicate", "NgramIndex", "Opening", "Pair", "Protected",
           "THRESHOLDS", "collapse", "collapsed", "compare", "diversity_of", "duplicates", "lexical_pairs",
           "semantic_pairs"]
