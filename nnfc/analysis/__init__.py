"""``nnfc analyze``: the paper's analyses of a factory as pictures (PNG) with the data behind
them (JSON), and a static HTML report of all of them.

One module per analysis, each with ``compute(...) -> dict`` (JSON-able, the documented keys) and
``plot(data, path)``: :mod:`frontier` (metric against measured latency per limit),
:mod:`activation` (actual activation ratio vs limit, Fig. 11), :mod:`gate_similarity`
(Fig. 15), :mod:`predictor_curve` (predictor accuracy vs profiled subnets, Fig. 13),
:mod:`training_curve` (metric vs epochs, Fig. 12), :mod:`environments` (latency alone, beside
background processes and per thread count, Fig. 2); :mod:`report` writes all of them with an
``index.html``.
"""

#: analysis name -> module (the order of the report)
ANALYSES = {
    "frontier": "nnfc.analysis.frontier",
    "activation": "nnfc.analysis.activation",
    "gates": "nnfc.analysis.gate_similarity",
    "predictor": "nnfc.analysis.predictor_curve",
    "training": "nnfc.analysis.training_curve",
    "environments": "nnfc.analysis.environments",
}
