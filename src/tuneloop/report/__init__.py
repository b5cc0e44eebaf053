"""Run comparison → one self-contained HTML file (inline CSS, plots as data: URIs, no scripts)."""

from tuneloop.report.build import ReportSummary, gather, render_html, write_report

__all__ = ["ReportSummary", "gather", "render_html", "write_report"]
