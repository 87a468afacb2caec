"""How far a metric can be trusted: against perturbed pairs, against a judge's preferences, against human
verdicts."""
