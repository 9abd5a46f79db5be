"""Cold-start evaluation: cold and warm queries scored apart; the simulated co-watch protocol;
the HTML report with its plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.coldstart import cold_warm_sections, simulate_cowatch
from training.evaluation import relevance_from_labels
from training.report import ReportInputs, category_precision, precision_curves, write_report


def _unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_cold_and_warm_sections_on_a_hand_made_case() -> None:
    # two categories of three clips; clips 0, 1 and 3 are warm (training used them)
    labels = np.array([0, 0, 0, 1, 1, 1])
    warm = np.array([True, True, False, True, False, False])
    relevant = relevance_from_labels(labels, min_relevant=2)
    # the model puts every clip with its category
    model = _unit([[1, 0.1], [1, 0.2], [1, 0.3], [0.1, 1], [0.2, 1], [0.3, 1]])
    # the content features misplace the cold clips 2 and 4 (each sits in the other category)
    baseline = _unit([[1, 0.1], [1, 0.2], [0.3, 1], [0.1, 1], [1, 0.5], [0.25, 1]])
    sections = cold_warm_sections(model, baseline, relevant, warm, ks=(1, 2))
    cold, hot = sections["cold"], sections["warm"]
    assert cold["queries"] == 3 and hot["queries"] == 3
    assert set(cold) == {"queries", "model", "content_baseline", "random"}
    assert cold["model"]["precision@1"] == 1.0 and cold["model"]["map"] == 1.0
    # clip 2's nearest neighbours are 5 then 3 (both wrong), clip 4's are 0 then 1 (wrong);
    # clip 5's nearest is 2 (wrong), then 3 (right)
    assert cold["content_baseline"]["precision@1"] == 0.0
    assert cold["content_baseline"]["precision@2"] == 1 / 6
    # warm queries: 0 and 1 keep their category; 3's nearest is 5 (right)
    assert hot["content_baseline"]["precision@1"] == 1.0
    assert 0.0 < cold["random"]["precision@1"] < 1.0
    baselines_only = cold_warm_sections(None, baseline, relevant, warm, ks=(1,))
    assert "model" not in baselines_only["cold"] and baselines_only["cold"]["queries"] == 3


def test_simulated_cowatch_is_seeded_and_stays_among_warm_clips() -> None:
    labels = np.repeat(np.arange(4), [6, 4, 3, 1])
    first, again = simulate_cowatch(labels, seed=3), simulate_cowatch(labels, seed=3)
    assert (first.pairs == again.pairs).all() and (first.warm == again.warm).all()
    assert np.isin(first.pairs, first.warm).all()  # cold clips get no pair
    assert 13 not in first.warm  # a category with one clip stays cold
    counts = np.bincount(labels[first.warm], minlength=4)
    assert counts[0] == 3 and counts[1] == 2 and counts[2] in (1, 2)  # about half of each
    per = np.bincount(labels[first.warm])
    genuine = int((per * (per - 1) // 2).sum())  # every same-category pair of warm clips
    assert len(first.pairs) == genuine + round(genuine / 4)  # plus a fifth of noise pairs
    assert ((first.weights >= 1) & (first.weights <= 5)).all()


def test_report_writes_html_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    categories = ["dog"] * 4 + ["drums"] * 3 + ["water"]
    model = _unit((rng.normal(size=(8, 4)) + np.repeat(np.eye(4)[:3], [4, 3, 1], 0) * 3).tolist())
    inputs = ReportInputs(
        model=model,
        baseline=_unit(rng.normal(size=(8, 4)).tolist()),
        categories=categories,
        names=[f"clip{i}" for i in range(8)],
        images=[rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(7)] + [None],
        history=[{"epoch": -1, "val_map": 0.5}, {"epoch": 0, "train_loss": 0.3, "val_map": 0.6}],
        summary={"model_version": "v1", "clips": 8, "model": {"precision@1": 1.0}},
    )
    page = write_report(tmp_path / "report", inputs)
    html = page.read_text()
    for name in ("precision_at_k.png", "category_precision.png", "training.png", "neighbours.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
        assert f"src='{name}'" in html
    curves = precision_curves(inputs)
    assert curves["model"][0] == 1.0 and len(curves["random"]) == 7  # k up to n - 1
    assert set(category_precision(inputs)) == {"dog", "drums"}  # water has no query


def _report_inputs(categories: list[str], names: list[str]) -> ReportInputs:
    rng = np.random.default_rng(1)
    n = len(categories)
    return ReportInputs(
        model=_unit(rng.normal(size=(n, 4)).tolist()),
        baseline=_unit(rng.normal(size=(n, 4)).tolist()),
        categories=categories,
        names=names,
        images=[rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(n)],
        history=[{"epoch": 0, "train_loss": 0.3, "val_map": 0.6}],
        summary={"model_version": "v$1$_a", "clips": n, "model": {"precision@1": 1.0}},
    )


def test_report_shows_catalog_text_as_plain_text(tmp_path: Path) -> None:
    # Category names and titles come from the catalog: TeX markup must never be interpreted
    # (an unknown mathtext command made matplotlib raise and no page was written).
    categories = [r"$\bogus{x}$"] * 3 + ["a_b $x^2$"] * 3 + ["100$ and 5$"] * 2
    names = [rf"clip_{i} $\frac{{$" for i in range(len(categories))]
    page = write_report(tmp_path / "report", _report_inputs(categories, names))
    assert page.read_text().count("<img") == 4
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(
        [
            "index.html",
            "precision_at_k.png",
            "category_precision.png",
            "training.png",
            "neighbours.png",
        ]
    )  # no temporary folder left behind


def test_report_replaces_symlinks_in_its_folder_instead_of_following_them(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "report"
    folder.mkdir()
    for name in ("index.html", "neighbours.png"):
        (outside / name).write_text("not yours")
        (folder / name).symlink_to(outside / name)
    write_report(folder, _report_inputs(["a"] * 3 + ["b"] * 3, [f"c{i}" for i in range(6)]))
    for name in ("index.html", "neighbours.png"):
        assert (outside / name).read_text() == "not yours"
        assert not (folder / name).is_symlink() and (folder / name).stat().st_size > 100
