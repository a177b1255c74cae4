"""The paper's baselines (NN-Factory §5.2), built from a factory bundle and measured like
``nnfc compile``'s output: Retrain (the factory's network trained from scratch for one task) and
Prune&Tune (the trained supernet pruned to the budget with torch-pruning, then fine-tuned).
Both need torch; the compile path never imports this package."""
