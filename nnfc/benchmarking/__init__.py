"""Benchmarking emitted artifacts for CI (``nnfc bench``): interleaved measurement rounds
(:mod:`.rounds`), changes against a baseline with confidence intervals (:mod:`.compare`), the
saved-run format (:mod:`.record`), the artifact's metric (:mod:`.evaluate`) and reports for CI
(:mod:`.junit`, :mod:`.markdown`, :mod:`.trend`)."""
