"""The benchmark harness (benchmarks/): a tiny in-process run and its parts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the cwd
    sys.path.insert(0, str(ROOT))

from benchmarks import harness as H  # noqa: E402
from benchmarks import workloads as W  # noqa: E402
from benchmarks.__main__ import parse_args  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run (tiny sizes, 2 repetitions, all providers) on the CPU."""
    out = tmp_path_factory.mktemp("bench")
    config = H.Config(devices=("cpu",), preset="smoke", out_dir=out, progress=False, print_table=False,
                      command="pytest tests/test_benchmarks.py")
    (report,) = H.run(config)
    return report, out


def test_smoke_run_covers_every_case_and_provider(smoke):
    report, _ = smoke
    cases = H.plan("smoke", "cpu", (torch.float32,))
    assert len(report.rows) == len(cases) * len(W.PROVIDERS)
    seen = {(r.case, r.provider) for r in report.rows}
    for spec in cases:
        for provider in W.PROVIDERS:
            assert (spec.label, provider) in seen
    for row in report.rows:
        assert row.reps == 2
        assert 0 < row.p20_ms <= row.median_ms <= row.p80_ms
        assert row.GBps > 0 and row.pct_copy > 0
        assert row.peak_bytes >= 0
        assert row.fast_speedup > 0
    assert float(report.meta["copy_bandwidth_GBps"]) > 0


def test_vae_loss_objective_identical_across_providers(smoke):
    report, _ = smoke
    by_case: dict[str, dict[str, float]] = {}
    for row in report.rows:
        if row.workload == "vae_loss":
            by_case.setdefault(row.case, {})[row.provider] = row.objective
    assert len(by_case) == 4
    for case, objectives in by_case.items():
        assert set(objectives) == set(W.PROVIDERS), case
        ref = objectives["eager"]
        assert math.isfinite(ref)
        for provider, value in objectives.items():
            assert value == pytest.approx(ref, rel=1e-5, abs=1e-5), (case, provider)


def test_table_csv_markdown_and_plot_written(smoke):
    report, out = smoke
    stem = f"{report.tag}-smoke"
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    assert report.tag.startswith("cpu-") and report.tag.endswith("c")
    assert csv_path in report.files and md_path in report.files

    header = csv_path.read_text().splitlines()
    meta = {line[2:].split(":", 1)[0] for line in header if line.startswith("# ")}
    assert {"device", "cpu_model", "threads", "torch", "date", "command", "copy_bandwidth_GBps"} <= meta
    rows = H.read_csv(csv_path)
    assert len(rows) == len(report.rows)
    assert {r["provider"] for r in rows} == set(W.PROVIDERS)
    for r in rows:
        assert float(r["median_ms"]) > 0 and r["bytes_formula"]
    vae = [r for r in rows if r["workload"] == "vae_loss" and r["mode"] == "fwd+bwd"]
    assert {r["variant"] for r in vae} == set(W.LIKELIHOODS)

    md = md_path.read_text()
    assert "| case | provider |" in md and "pytest tests/test_benchmarks.py" in md
    for provider in W.PROVIDERS:
        assert f"| {provider} |" in md

    text = H.render_text(report)
    assert "vae_loss[gaussian] tiny fp32 fwd+bwd" in text and "fast speed-up" in text

    png = out / f"{stem}.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert png not in report.files
    else:
        assert png in report.files and png.stat().st_size > 0


def test_mismatching_provider_fails_loudly(monkeypatch, tmp_path):
    real = W.fast_vae_loss

    def wrong(x, x_hat, mu, log_var, beta, likelihood):
        result = real(x, x_hat, mu, log_var, beta, likelihood)
        return type(result)(objective=result.objective * 1.01, diagnostics=result.diagnostics)

    monkeypatch.setattr(W, "fast_vae_loss", wrong)
    config = H.Config(devices=("cpu",), preset="smoke", providers=("eager", "fast"), out_dir=tmp_path,
                      workloads=["vae_loss[gaussian] tiny fp32 fwd+bwd"], progress=False, print_table=False)
    with pytest.raises(H.ProviderMismatch, match=r"fast: objective"):
        H.run(config)
    assert not list(tmp_path.iterdir())  # nothing is written for a void benchmark


def test_keep_going_reports_a_failed_case_and_writes_the_others(monkeypatch, tmp_path):
    real = W.fast_vae_loss

    def wrong_for_bernoulli(x, x_hat, mu, log_var, beta, likelihood):
        result = real(x, x_hat, mu, log_var, beta, likelihood)
        scale = 1.01 if likelihood == "bernoulli" else 1.0
        return type(result)(objective=result.objective * scale, diagnostics=result.diagnostics)

    monkeypatch.setattr(W, "fast_vae_loss", wrong_for_bernoulli)
    config = H.Config(devices=("cpu",), preset="smoke", providers=("eager", "fast"), out_dir=tmp_path,
                      workloads=["vae_loss[bernoulli] tiny fp32 fwd+bwd", "vae_loss[gaussian] tiny fp32 fwd+bwd"],
                      progress=False, print_table=False, plot=False, keep_going=True)
    (report,) = H.run(config)
    assert {r.variant for r in report.rows} == {"gaussian"}
    assert "vae_loss[bernoulli] tiny fp32 fwd+bwd: ProviderMismatch" in report.meta["failed_cases"]
    csv = next(tmp_path.glob("*.csv")).read_text()
    assert "failed_cases" in csv and "gaussian" in csv


def test_results_are_on_disk_after_each_case(monkeypatch, tmp_path):
    """A run cut off mid-way (a GPU lease ending) keeps the cases it finished."""
    seen = []
    real_run_case = H.run_case

    def run_case_then_look(spec, cfg, copy_gbps, copy_device_gbps=math.nan):
        rows = real_run_case(spec, cfg, copy_gbps, copy_device_gbps)
        seen.append(sorted(p.name for p in tmp_path.glob("*.csv")))
        return rows

    monkeypatch.setattr(H, "run_case", run_case_then_look)
    config = H.Config(devices=("cpu",), preset="smoke", providers=("eager", "fast"), out_dir=tmp_path,
                      workloads=["vae_loss[gaussian] tiny fp32"], progress=False, print_table=False, plot=False)
    H.run(config)
    assert len(seen) == 2 and seen[0] == [] and len(seen[1]) == 1  # written after the first case


def test_verify_compares_gradients():
    spec = W.Spec("log_likelihood_sum", "gaussian", W.SMOKE_SIZE, torch.float32, "fwd+bwd", "cpu")
    bench = W.build(spec)
    H.verify(bench, ["eager", "fast"])
    real = bench.providers["fast"]

    def wrong_grad():
        results = real()
        results["grad_x_hat"] = results["grad_x_hat"] * 2
        return results

    bench.providers["fast"] = wrong_grad
    with pytest.raises(H.ProviderMismatch, match="grad_x_hat"):
        H.verify(bench, ["eager", "fast"])


def test_cpu_peak_memory_tracks_the_high_water_mark():
    n = 1 << 20  # 4 MiB of float32

    def one_output():
        return torch.empty(n)

    def temporary_then_output():
        a = torch.ones(n)
        b = a * 2  # 8 MiB live
        del a
        return b + 1  # 8 MiB live again

    assert H.peak_memory(one_output, "cpu") == pytest.approx(4 * n, rel=0.01)
    assert H.peak_memory(temporary_then_output, "cpu") == pytest.approx(8 * n, rel=0.01)
    assert H.peak_memory(one_output, "cpu") == pytest.approx(4 * n, rel=0.01)  # no drift between calls


def test_minimum_bytes_formulas():
    large = W.SIZES["large"]
    B, S, F, L, e = 128, 4, 3 * 64 * 64, 32, 4
    spec = W.Spec("vae_loss", "gaussian", large, torch.float32, "fwd+bwd", "cpu")
    assert W.build(spec).min_bytes == e * (B * F + 2 * B * S * F + 4 * B * L)
    spec = W.Spec("vae_loss", "bernoulli", large, torch.bfloat16, "fwd", "cpu")
    bench = W.build(spec)
    assert bench.min_bytes == 2 * (B * F + B * S * F + 2 * B * L)
    assert bench.ratio_name == "x_hat" and bench.ratio_bytes == 2 * B * S * F
    B, G = 128, 2000
    for lik, P, T in (("zinb", 2, 1), ("nb", 1, 1), ("poisson", 1, 0)):
        spec = W.Spec("count_loss", lik, W.COUNT_SIZES[0], torch.float32, "fwd+bwd", "cpu")
        assert W.build(spec).min_bytes == 4 * ((1 + 2 * P) * B * G + 2 * T * G + 2 * B)
    B, P = 128, 200
    spec = W.Spec("protein_loss", "", W.PROTEIN_SIZES[0], torch.float32, "fwd+bwd", "cpu")
    assert W.build(spec).min_bytes == 4 * (7 * B * P + 2 * P + 2 * B)
    B, S, F, L = 128, 1, 784, 32
    spec = W.Spec("vae_loss_learned_var", "gaussian", W.SIZES["small-b128"], torch.float32, "fwd+bwd", "cpu")
    assert W.build(spec).min_bytes == 4 * (B * F + 4 * B * S * F + 4 * B * L)
    B, S = 128, 50
    spec = W.Spec("iwae_bound", "bernoulli", W.IWAE_SIZE, torch.float32, "fwd+bwd", "cpu")
    bench = W.build(spec)
    assert bench.min_bytes == 4 * (B * F + 2 * B * S * F + 2 * B * S * L + 4 * B * L + 2 * B)
    assert bench.ratio_bytes == 4 * B * S * F


def test_presets():
    quick = H.plan("quick", "cpu", (torch.float32,))
    labels = [s.label for s in quick]
    for size in ("small", "small-b128", "large"):
        for lik in ("gaussian", "bernoulli"):
            assert f"vae_loss[{lik}] {size} fp32 fwd+bwd" in labels
    assert not any("larger" in label for label in labels)  # (CUDA only)
    cuda = [s.label for s in H.plan("quick", "cuda", (torch.float32,))]
    assert "vae_loss[gaussian] larger fp32 fwd+bwd" in cuda
    assert (W.LARGER.batch, W.LARGER.samples, W.LARGER.features) == (256, 8, (3, 64, 64))
    assert {s.workload for s in quick} == set(W.WORKLOADS)
    full = H.plan("full", "cpu", (torch.float32, torch.bfloat16))
    sweep = {s.size.num_features for s in full if s.sweep}
    assert sweep == set(W.SWEEP_FEATURES)
    assert {s.mode for s in full} == set(W.MODES)
    assert H.Config(preset="quick").resolved().dtypes == (torch.float32,)


def test_cli_arguments():
    args = parse_args(["--quick", "--device", "cpu", "--providers", "eager,fast", "--no-plot"])
    assert args.quick and args.device == "cpu" and args.no_plot
    with pytest.raises(SystemExit):
        parse_args(["--quick", "--smoke"])


def test_training_benchmark_smoke(tmp_path):
    from benchmarks import training as T

    results = T.run("cpu", "smoke", command="pytest", out_dir=tmp_path)
    assert {(r.case, r.provider) for r in results} == {  # (fast+graph: CUDA only)
        (c.label, p) for c in T.SMOKE_CASES for p in ("eager", "fast")
    }
    for r in results:
        assert 0 < r.step_p20_ms <= r.step_ms <= r.step_p80_ms
        assert r.loss_ms > 0 and r.loss_share > 0 and r.speedup > 0
    text = next(tmp_path.glob("training-*-smoke.md")).read_text()
    assert "cpu_capability" in text and "| training step |" in text


def test_training_benchmark_providers_train_the_same_model():
    from benchmarks import training as T

    for case in T.SMOKE_CASES:
        eager, fast = T.build_pair(case, "cpu")
        x = T.make_data(case, "cpu")
        objective = T.check_same_numbers(T.Trainer("eager", eager, case, x), T.Trainer("fast", fast, case, x))
        assert math.isfinite(objective)


def test_overhead_breakdown_runs(capsys):
    import pyautoencoder_fast as paf
    from benchmarks import overhead

    if not paf.extension_available():
        pytest.skip("extension not loaded")
    assert overhead.main(["--reps", "3", "--batch", "4", "--features", "7", "--latent", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 9 and all(float(line.split()[0]) > 0 for line in lines[1:])


def test_launch_counting_classifies_profiler_events():
    from types import SimpleNamespace

    from benchmarks import launches as Lc

    def ev(name, device):
        return SimpleNamespace(name=name, device_type=SimpleNamespace(name=device))

    events = [
        ev("paf_elbo_stats_kernel", "CUDA"), ev("void at::native::reduce_kernel<...>", "CUDA"),
        ev("Memcpy DtoH (Device -> Pageable)", "CUDA"), ev("Memset (Device)", "CUDA"),
        ev("Memcpy HtoD (Pageable -> Device)", "CUDA"),
        ev("cudaLaunchKernel", "CPU"), ev("cudaMemcpyAsync", "CPU"), ev("cudaStreamSynchronize", "CPU"),
        ev("aten::item", "CPU"),
    ]
    counts = Lc.count_device_work(events)
    assert (counts.kernels, counts.dtoh, counts.syncs) == (2, 1, 1)
    per = (counts - Lc.Counts(syncs=1)).per_call(2)
    assert (per.kernels, per.dtoh, per.syncs) == (1, 0.5, 0)


def test_launch_counting_refuses_without_cuda():
    from benchmarks import launches as Lc

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        Lc.main(["--device", "cpu"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_training_step_captured_in_a_cuda_graph_trains():
    from benchmarks import training as T

    case = T.SMOKE_CASES[0]
    eager, fast = T.build_pair(case, "cuda")
    x = T.make_data(case, "cuda")
    graph = T.GraphTrainer(fast, case, x)
    T.check_same_numbers(T.Trainer("eager", eager, case, x), graph)
    graph.capture()
    graph.check_training()  # raises unless the replays move the weights and stay finite
    first = graph.stats.clone()
    graph.step()
    assert not torch.equal(first, graph.stats)  # fresh noise and new weights on each replay


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_launch_counts_on_cuda():
    from benchmarks import launches as Lc

    rows = Lc.measure("bernoulli", 8, 13, 3, calls=3, device="cuda")
    by = {r.provider: r for r in rows}
    assert by["eager"].forward.dtoh == 3  # its three .item() calls
    assert by["fast"].forward.dtoh == 1  # one .tolist()
    assert by["fast"].forward.kernels >= 1 and by["fast"].backward.kernels >= 1
    a = torch.rand(1 << 20, device="cuda")
    (name, launches, us), *_ = Lc.kernel_breakdown(lambda: a.mul(2), calls=3)
    assert launches == 1 and us > 0
    assert "us of device time" in Lc.breakdown_markdown(4, 2, (3, 5), 2, 2, "cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_device_time_counts_the_kernels_only():
    a = torch.rand(1 << 24, device="cuda")
    one = H.device_seconds(lambda: a.mul(2))
    two = H.device_seconds(lambda: (a.mul(2), a.mul(3)))
    assert 0 < one < 1e-2 and two == pytest.approx(2 * one, rel=0.3)
    assert H.measure_copy_device_bandwidth(64, "cuda") > 100  # GB/s: any GPU
