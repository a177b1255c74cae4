"""The nnfc compiler: (factory bundle, task, target, budget) -> a pruned, lowered, measured model.

Modules, one job each (none imports torch):

- ``graph_stats``       exact params, FLOPs, parameter bytes, largest tensor of a static ONNX model
- ``cost_analysis``     a supernet's cost structure, from the pruning passes' own regions and rules
- ``cost_structure``    gate vectors -> the pruned graph's cost figures and per-layer terms
- ``cost_legacy``       cost structures saved by older nnfc versions
- ``assembler_runtime`` the bundle's assembler on ONNX Runtime: task + limits -> gates (batched)
- ``measure``           best-of-rounds latency measurement on any target
- ``profiler``          random subnets pruned, lowered and measured on a target (resumable);
                        device-side export/import for targets this machine cannot drive
- ``predictor``         layer-wise linear latency/memory model: fit, score, save, plot
- ``fitting``           measurements -> saved predictor for a bundle and target
- ``search``            Algorithm 1 and its one-call batched equivalent (and ``best``)
- ``pipeline``          ``compile_model``: search -> prune -> lower -> measure -> report.json
"""
