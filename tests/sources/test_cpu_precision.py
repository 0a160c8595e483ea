"""``--dtype auto`` on a CPU: bfloat16 only with native instructions, a measured speed-up and
an agreement ``lamina precision`` recorded for these weights; the cache files it reads."""

from __future__ import annotations

import json

import pytest

from lamina.sources import cpu_precision as cp


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMINA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _native(monkeypatch, flags=("avx512_bf16",), speedup=2.9):
    monkeypatch.setattr(cp, "native_flags", lambda flags_=None: list(flags))
    monkeypatch.setattr(cp, "machine_speedup", lambda: {"speedup": speedup})


def test_flags_are_read_from_cpuinfo_lines():
    flags = cp.cpu_flags()
    assert isinstance(flags, set)
    assert cp.native_flags({"avx2", "avx512_bf16", "fma"}) == ["avx512_bf16"]
    assert cp.native_flags({"avx2", "fma"}) == []


def test_auto_is_float32_without_native_bfloat16(cache, monkeypatch):
    _native(monkeypatch, flags=())
    assert cp.auto_cpu_dtype("sha256:abc") == (
        "float32",
        "auto: float32 (this CPU has no native bfloat16 instructions)",
    )


def test_auto_needs_an_agreement_that_held_and_a_speed_up(cache, monkeypatch):
    _native(monkeypatch)
    dtype, reason = cp.auto_cpu_dtype("sha256:abc")
    assert dtype == "float32" and "has not checked this model" in reason
    cp.record_agreement("sha256:abc", "bfloat16", {"holds": False, "label_agreement": 0.9})
    dtype, reason = cp.auto_cpu_dtype("sha256:abc")
    assert dtype == "float32" and "changes this model's study" in reason
    cp.record_agreement("sha256:abc", "bfloat16", {"holds": True, "label_agreement": 0.992})
    assert cp.auto_cpu_dtype("sha256:abc")[0] == "bfloat16"
    assert "99.20% of the labels agree" in cp.auto_cpu_dtype("sha256:abc")[1]
    checked = {"text": "gutenberg:11", "n_scored": 39060, "windows": "stream"}
    cp.record_agreement(
        "sha256:abc", "bfloat16", {"holds": True, "label_agreement": 0.99, "checked_on": checked}
    )
    assert (
        "for these weights on gutenberg:11 (39,060 tokens, --windows stream): 99.00% of the"
        in cp.auto_cpu_dtype("sha256:abc")[1]
    )
    assert cp.auto_cpu_dtype("sha256:other")[0] == "float32"  # other weights: not checked
    _native(monkeypatch, speedup=1.2)
    dtype, reason = cp.auto_cpu_dtype("sha256:abc")
    assert dtype == "float32" and "only 1.20x faster" in reason
    files = list((cache / cp.AGREEMENT_DIR).iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text())["fingerprint"] == "sha256:abc"


def test_the_speed_up_is_measured_once_per_machine_and_a_corrupt_cache_again(cache, monkeypatch):
    calls = []

    def measure():
        calls.append(1)
        return {"float32": 2.0, "bfloat16": 1.0, "speedup": 2.0}

    monkeypatch.setattr(cp, "measure_speedup", measure)
    assert cp.machine_speedup()["speedup"] == 2.0
    assert cp.machine_speedup()["speedup"] == 2.0 and len(calls) == 1
    (cache / cp.CACHE_NAME).write_text("{not json", encoding="utf-8")
    assert cp.machine_speedup()["speedup"] == 2.0 and len(calls) == 2
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # another ISA cap: another machine key
    cp.machine_speedup()
    assert len(calls) == 3 and len(json.loads((cache / cp.CACHE_NAME).read_text())) == 2


def test_a_real_measurement_times_both_precisions():
    measured = cp.measure_speedup()
    assert measured["float32"] > 0 and measured["bfloat16"] > 0
    assert measured["speedup"] == pytest.approx(measured["float32"] / measured["bfloat16"])
