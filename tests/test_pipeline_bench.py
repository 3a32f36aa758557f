"""``spillwatch bench pipeline`` end to end on a tiny scale (real broker, real worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import processors.bench as bench_mod
from processors.bench import OTHER_ROLE, bracket, cpu_budget, dist, run_bench, threads_per_worker
from spillwatch.settings import Settings
from tests.helpers.tiny_model import build_tiny_model


def test_dist_percentiles() -> None:
    d = dist([float(x) for x in range(1, 101)])
    assert d["n"] == 100 and d["p50"] == pytest.approx(50.5) and d["p99"] == pytest.approx(99.0, abs=0.1)
    assert dist([])["p50"] is None


def test_cpu_budget_says_how_many_cores_the_offered_rate_takes() -> None:
    # a run that reached 250 of 600 frames/s on 2 cores: the workers took 1.0 core, the broker 0.5
    b = cpu_budget({"workers": 1.0, "broker": 0.5, OTHER_ROLE: 0.4}, done_fps=250.0, offered_fps=600.0, cpus=2)
    assert b["ms_per_frame"] == {"workers": 4.0, "broker": 2.0}  # another session's processes are not the pipeline's
    assert b["ms_per_frame_total"] == 6.0
    assert b["cores_needed_at_offered_rate"] == 3.6 and b["cpus"] == 2  # 600 x 6 ms: more than the machine has
    assert cpu_budget({"workers": 1.0}, done_fps=0.0, offered_fps=600.0, cpus=2)["cores_needed_at_offered_rate"] is None


def test_ratio_to_the_ceiling_is_bracketed_and_a_drifting_host_is_flagged() -> None:
    before = {"ceiling_fps_one_worker": 200.0, "inference_ms_per_frame": 3.5}
    # the host slowed by a quarter during the run: 150 frames/s is 0.75 of the ceiling before, 1.0 of the
    # one after; neither alone measures the worker, and the bracket says so
    slowed = bracket(150.0, before, {"ceiling_fps_one_worker": 150.0, "inference_ms_per_frame": 4.7})
    assert slowed["ratio_one_worker_to_ceiling"] == pytest.approx(150 / 175, abs=1e-3)
    assert slowed["ratio_range"] == [0.75, 1.0] and slowed["drift"] == 0.75 and slowed["steady"] is False
    steady = bracket(170.0, before, {"ceiling_fps_one_worker": 190.0, "inference_ms_per_frame": 3.6})
    assert steady["steady"] is True and steady["ratio_one_worker_to_ceiling"] == pytest.approx(170 / 195, abs=1e-3)
    assert steady["ceiling_fps_before"] == 200.0 and steady["ceiling_fps_after"] == 190.0


def test_alternating_ratio_weighs_each_segment_by_its_time_against_the_ceilings_either_side() -> None:
    from processors.bench import alternating_ratio

    # two segments of 600 frames; the host slowed during the second (ceiling passes 200, 200, then 100): the
    # second segment's 75 frames/s is held against 150 (the mean either side), not against the 200 before the run
    segs = [{"classified": 600, "frames_per_s": 150.0, "ceiling_fps_before": 200.0, "ceiling_fps_after": 200.0},
            {"classified": 600, "frames_per_s": 75.0, "ceiling_fps_before": 200.0, "ceiling_fps_after": 100.0}]
    out = alternating_ratio(segs)
    assert [r["ratio"] for r in segs] == [0.75, 0.5]  # each against the mean of its two ceilings
    # 600/200 + 600/150 = 7 s at the ceilings against 600/150 + 600/75 = 12 s taken
    assert out["ratio_one_worker_to_ceiling"] == pytest.approx(7 / 12, abs=1e-3)
    assert out["ratio_segments_median"] == 0.625 and out["ratio_segments_range"] == [0.5, 0.75]
    stalled = alternating_ratio([{"classified": 0, "frames_per_s": None, "ceiling_fps_before": 1.0, "ceiling_fps_after": 1.0}])
    assert stalled["ratio_one_worker_to_ceiling"] is None and stalled["ratio_segments_range"] is None


@pytest.mark.parametrize(("cores", "setting", "expected"), [
    (2, 2, {1: 2, 2: 1}),            # this development machine: today's split, unchanged
    (16, 2, {1: 2, 2: 2, 4: 2}),     # a bigger host: each worker runs as deployed, loops and broker beside it
    (4, 4, {1: 4, 2: 2, 3: 1, 8: 1}),
])
def test_bench_gives_each_worker_its_setting_but_never_more_than_its_share_of_the_cores(
        monkeypatch: pytest.MonkeyPatch, cores: int, setting: int, expected: dict[int, int]) -> None:
    monkeypatch.setattr(bench_mod, "usable_cores", lambda: cores)
    s = Settings()
    s = s.model_copy(update={"worker": s.worker.model_copy(update={"intra_op_threads": setting})})
    assert {n: threads_per_worker(s, n) for n in expected} == expected


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_bench_pipeline_small_run_writes_figures(stack_settings: Settings, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model", input_size=64, map_size=8)
    out = tmp_path / "bench" / "pipeline.json"
    result = run_bench(
        cameras=3, fps=2.0, seconds=4.0, worker_counts=[1], width=320, throughput_frames=60,
        out=out, embedded=False, model=model, settings=stack_settings, ratio_segments=3,
    )
    saved = json.loads(out.read_text())
    assert saved["throughput"] == result["throughput"]
    assert saved["profile"]["inference_ms_per_frame"] > 0 and saved["profile"]["ceiling_fps_one_worker"] > 0
    (tp,) = saved["throughput"]
    assert tp["workers"] == 1 and tp["classified"] == 60 and tp["frames_per_s"] > 0
    # the ratio's two sides can be read apart: the model's time inside the saturated worker, the cores
    # each process had, and the ceiling's spread over its rounds
    assert tp["inference_ms_per_frame_median"] > 0 and tp["cores_used_during_run"]["workers"] > 0
    rounds = saved["profile"]["ceiling_fps_rounds"]
    assert len(rounds) == 3 and rounds == sorted(rounds) and rounds[1] == saved["profile"]["ceiling_fps_one_worker"]
    # the ceiling again right after the one-worker run, and the ratio against both
    b = saved["ceiling_bracket"]
    assert b["ceiling_fps_after"] == saved["profile_after"]["ceiling_fps_one_worker"] > 0
    assert b["ratio_range"][0] <= b["ratio_one_worker_to_ceiling"] <= b["ratio_range"][1]
    # and taken in turns: three segments of the burst, each between two ceiling passes, every frame classified
    alt = saved["alternating"]
    assert [r["frames"] for r in alt["segments"]] == [20, 20, 20] and alt["classified"] == 60
    for prev, row in zip(alt["segments"], alt["segments"][1:], strict=False):
        assert row["ceiling_fps_before"] == prev["ceiling_fps_after"]  # one pass between two segments
    assert all(r["ratio"] > 0 and r["ceiling_fps_before"] > 0 for r in alt["segments"])
    lo, hi = alt["ratio_segments_range"]
    assert lo <= alt["ratio_segments_median"] <= hi and lo <= alt["ratio_one_worker_to_ceiling"] <= hi
    lat = saved["latency"]
    assert lat["published"] == 3 * 8 and lat["classified"] == lat["published"]
    c2c = lat["capture_to_classification_ms"]
    assert 0 < c2c["p50"] <= c2c["p99"] < 30_000
    assert lat["false_alert_cameras"] == []
    budget = lat["cpu_budget"]
    assert budget["ms_per_frame"]["workers"] > 0 and budget["cores_needed_at_offered_rate"] > 0


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_bench_pipeline_static_scene_reuses_most_frames_and_names_its_scene(stack_settings: Settings, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model", input_size=64, map_size=8)
    out = tmp_path / "bench" / "static.json"
    run_bench(
        cameras=4, fps=2.0, seconds=6.0, worker_counts=[1], width=320, throughput_frames=320,
        out=out, embedded=False, model=model, settings=stack_settings, scene="static",
    )
    saved = json.loads(out.read_text())
    assert saved["scene"] == "static" and saved["profile"]["model_file"] == "tiny.onnx"
    (tp,) = saved["throughput"]
    assert tp["classified"] == 320 and tp["inferred_fraction"] < 0.5
    lat = saved["latency"]
    assert lat["classified"] == lat["published"] == 4 * 12
    assert 0 < saved["gating"]["inferred_fraction"] < 0.6 and saved["gating"]["enabled"] is True
    assert {"published", "classified", "capture_to_classification_ms", "spill_cameras", "confirmed_alerts",
            "false_alert_cameras"} <= set(lat)


def test_contention_bench_compares_each_case_with_the_classifier_alone_and_restores_the_switch_interval(tmp_path: Path) -> None:
    import sys

    from processors.bench_contention import run, scene_records

    model = build_tiny_model(tmp_path / "model", input_size=64, map_size=8)
    settings = Settings.model_validate({"worker": {"model_path": str(model), "batch_size": 4}})
    before = sys.getswitchinterval()
    out = run(settings, scene_records(16), rounds=2, threads=[1], intervals_ms=[5, 0.5], loop_work_ms=0.2,
              loop_sleep_ms=0.2, nices=(0, 5))
    assert sys.getswitchinterval() == before
    with pytest.raises(ValueError, match="0..19"):
        run(settings, scene_records(8), rounds=1, threads=[1], intervals_ms=[5], nices=(20,))
    cases = out["cases"]
    assert list(cases) == ["threads=1 alone", "threads=1 loop switch=5ms", "threads=1 loop switch=5ms nice=5",
                           "threads=1 loop switch=0.5ms", "threads=1 loop switch=0.5ms nice=5"]
    assert cases["threads=1 alone"]["ratio_to_alone"] == 1.0
    for name, row in cases.items():
        assert len(row["frames_per_s"]) == 2 and row["frames_per_s_median"] > 0
        assert ("loop_items_per_s_median" in row) == (name != "threads=1 alone")
        if name != "threads=1 alone":
            assert row["loop_items_per_s_median"] > 0  # the loop ran beside every measured pass
    assert out["frames_per_pass"] == 16 and 0 < out["inferred_fraction"] <= 1
    # the still cameras of --scene static (bench_scenes, tested there), recorded as such
    still = run(settings, scene_records(32, "static"), rounds=1, threads=[1], intervals_ms=[5], scene="static")
    assert (out["scene"], still["scene"]) == ("busy", "static") and 0 < still["inferred_fraction"] <= 1
    from spillwatch.events import decode_frame

    def images(scene: str) -> set[bytes]:
        return {decode_frame(v).jpeg for _, v in scene_records(32, scene) if v is not None}

    assert images("static").isdisjoint(images("busy"))  # noisy variants of stills, not the clips' frames


def test_worker_profile_tells_per_thread_where_it_ran_and_where_it_waited(tmp_path: Path) -> None:
    from processors.bench_profile import thread_waits

    run_ = "process (processors/classifier.py:160);infer (spillwatch/model.py:174);Session.run (onnxruntime:406)"
    dec = "process (processors/classifier.py:160);_imdecode (spillwatch/model.py:83)"
    loop = "run_forever (asyncio/base_events.py:600);select (selectors.py:468)"
    active = tmp_path / "p.threads.txt"
    active.write_text(f"thread (1): classify_0;{run_} 70\nthread (1): classify_0;{dec} 20\nthread (2): MainThread;{loop} 5\n")
    idle = tmp_path / "p.idle.txt"  # the same seconds with idle samples: the thread waited 8 samples after a decode
    idle.write_text(f"thread (1): classify_0;{run_} 71\nthread (1): classify_0;{dec} 28\nthread (2): MainThread;{loop} 99\n")
    waits = thread_waits(active, idle)
    c = waits["thread (1): classify_0"]
    assert (c.samples, c.running) == (99, 90) and c.running_share == 0.909
    assert c.idle_at.most_common() == [("_imdecode (spillwatch/model.py:83)", 8), ("Session.run (onnxruntime:406)", 1)]
    assert waits["thread (2): MainThread"].running_share == 0.051  # the loop mostly sits in select


def test_worker_profile_tells_how_much_of_the_time_the_gil_was_held_and_by_what(tmp_path: Path) -> None:
    from processors.bench_profile import gil_summary

    gil = tmp_path / "p.gil.txt"  # 1000 ticks; at 300 of them a thread held the GIL
    gil.write_text("run_forever (asyncio/base_events.py:600);model_dump_json (pydantic/main.py:587) 200\n"
                   "_worker (concurrent/futures/thread.py:83);jpeg_info (spillwatch/events.py:236) 100\n")
    out = gil_summary(gil, ticks=1000)
    assert out.startswith("holding the GIL: 300 of 1000 samples (30 % of the time")
    assert "66.7%  model_dump_json (pydantic/main.py:587)" in out and "33.3%  jpeg_info (spillwatch/events.py:236)" in out
    gil.write_text("")
    assert gil_summary(gil, ticks=1000).startswith("holding the GIL: 0 of 1000 samples (0 %")
