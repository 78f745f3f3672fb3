"""Reports on runs, by use: a run's report (:mod:`comp.report.run`, its tables in
:mod:`comp.report.tables`), a comparison of runs (:mod:`comp.report.compare`), the HTML page they
share (:mod:`comp.report.page`) and the CV-against-leaderboard plot (:mod:`comp.report.leaderboard`).
Figures are drawn by comp.plots."""

from comp.decision import default_label, default_thresholds
from comp.report.compare import Comparison, compare_dir, compare_table, oof_correlation, write_comparison
from comp.report.leaderboard import lb_plot, lb_points
from comp.report.page import image_html, page_html, table_html
from comp.report.run import RunReport, check_out_folder, run_figures, write_run_report
from comp.report.tables import (
    N_WEAKEST,
    RunTables,
    class_table,
    confusion_table,
    fold_spread,
    fold_table,
    pr_curve,
    prevalence_table,
    run_tables,
    thresholds_from_json,
    weakest_classes,
)

__all__ = [
    "N_WEAKEST",
    "Comparison",
    "RunReport",
    "RunTables",
    "check_out_folder",
    "class_table",
    "compare_dir",
    "compare_table",
    "confusion_table",
    "default_label",
    "default_thresholds",
    "fold_spread",
    "fold_table",
    "image_html",
    "lb_plot",
    "lb_points",
    "oof_correlation",
    "page_html",
    "pr_curve",
    "prevalence_table",
    "run_figures",
    "run_tables",
    "table_html",
    "thresholds_from_json",
    "weakest_classes",
    "write_comparison",
    "write_run_report",
]
