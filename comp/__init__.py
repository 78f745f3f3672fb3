"""comp: out-of-fold training, thresholds, ensembles and submissions for Kaggle NLP competitions."""

__version__ = "0.1.0"
