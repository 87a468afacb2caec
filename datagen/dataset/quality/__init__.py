"""Dataset-level quality, measured offline from texts and embeddings (never an LM call): near-duplicate samples,
diversity beside the source chunks, a pipeline's diversity bar, and contamination by protected text
(docs/quality.md)."""

from datagen.dataset.quality.bar import BarVerdict, DiversityBar
from datagen.dataset.quality.contamination import Contamination, NgramIndex, Protected
from datagen.dataset.quality.diversity import (Comparison, Diversity, Opening, collapse, collapsed, compare,
                                               compare_each, diversity_of, formulas)
from datagen.dataset.quality.near_duplicates import (THRESHOLDS, Duplicate, LexicalIndex, Pair, duplicates,
                                                     lexical_pairs, semantic_pairs)

__all__ = ["BarVerdict", "Comparison", "Contamination", "Diversity", "DiversityBar", "Duplicate", "LexicalIndex",
           "NgramIndex",
           "Opening", "Pair", "Protected", "THRESHOLDS", "collapse", "collapsed", "compare", "compare_each",
           "diversity_of", "duplicates", "formulas", "lexical_pairs", "semantic_pairs"]
