"""Budget strings -> numbers, with one clear error for bad input."""

import pytest

from nnfc.errors import NnfcError
from nnfc.units import format_mb, format_ms, parse_latency_ms, parse_memory_mb


@pytest.mark.parametrize("text,ms", [("5ms", 5.0), ("0.5s", 500.0), ("500us", 0.5),
                                     ("20 ms", 20.0), ("1.5MS", 1.5), ("2e1ms", 20.0),
                                     ("250µs", 0.25)])
def test_latency(text, ms):
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text,mb", [("50MB", 50.0), ("512KB", 0.512), ("1GB", 1000.0),
                                     ("1GiB", 1024 ** 3 / 1e6), ("1MiB", 1.048576),
                                     ("64KiB", 0.065536), ("2MB", 2.0), ("1000000B", 1.0)])
def test_memory(text, mb):
    assert parse_memory_mb(text) == pytest.approx(mb)


@pytest.mark.parametrize("text,needle", [("5", "no unit"), ("fast", "cannot parse"),
                                         ("5 hours", "unknown latency unit"), ("0ms", "positive"),
                                         ("-3ms", "cannot parse"), ("", "cannot parse")])
def test_latency_errors(text, needle):
    with pytest.raises(NnfcError, match=needle) as err:
        parse_latency_ms(text)
    assert "ms" in str(err.value)


@pytest.mark.parametrize("text,needle", [("50", "no unit"), ("50MiBs", "unknown memory unit"),
                                         ("lots", "cannot parse"), ("0GB", "positive"),
                                         ("50Mb", r"ambiguous \(bits or bytes\?\); write 50MB "
                                                  r"for bytes or 6.25MB for 50 Mbits"),
                                         ("8kb", "ambiguous")])
def test_memory_errors(text, needle):
    with pytest.raises(NnfcError, match=needle) as err:
        parse_memory_mb(text)
    assert "MiB" in str(err.value) or "positive" in str(err.value)


def test_exact_decimal_results():
    assert parse_latency_ms("346us") == 0.346
    assert parse_memory_mb("2.49MB") == 2.49 and parse_memory_mb("239KB") == 0.239


def test_format():
    assert format_ms(4.314) == "4.31 ms"
    assert format_ms(1200) == "1.20 s"
    assert format_mb(12.46) == "12.5 MB"
    assert format_mb(0.34) == "340 KB"
