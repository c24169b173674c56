"""The weekly report as an Excel workbook with native charts (XlsxWriter): sheets Summary, Brands, Daily, Sources,
Campaigns.

Every number comes from :meth:`WeeklyReport.tables`, the same rows as the CSV files and the JSON, so the three
agree by construction (a test reads the workbook back with openpyxl). Charts are Excel's own (they stay live
when an analyst filters or edits the sheet): the top makes' share with its 95 % interval, and the daily activity.
"""

from __future__ import annotations

import io
from typing import Final

import xlsxwriter

from carspot.dashboards.report import WeeklyReport

SHEETS: Final = {
    "summary": "Summary",
    "brands": "Brands",
    "daily": "Daily",
    "sources": "Sources",
    "campaigns": "Campaigns",
}
CHART_MAKES: Final = 10
"""The brand chart shows the makes with most images (the sheet lists them all)."""


def to_xlsx(report: WeeklyReport) -> bytes:
    """The workbook's bytes."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
    bold = book.add_format({"bold": True})
    percent = book.add_format({"num_format": "0.0%"})
    tables = report.tables()
    widths = {"summary": 26, "brands": 18, "daily": 14, "sources": 16, "campaigns": 18}
    for key, title in SHEETS.items():
        header, rows = tables[key]
        sheet = book.add_worksheet(title)
        sheet.set_column(0, len(header) - 1, widths[key])
        sheet.write_row(0, 0, header, bold)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                is_share = key in ("brands", "campaigns") and "share" in header[c] and "points" not in header[c]
                sheet.write(r, c, value, percent if is_share else None)
        sheet.freeze_panes(1, 0)
    _brand_chart(book, report, tables["brands"][0], len(tables["brands"][1]))
    _daily_chart(book, len(tables["daily"][1]))
    book.close()
    return buf.getvalue()


def _brand_chart(book: xlsxwriter.Workbook, report: WeeklyReport, header: tuple[str, ...], n: int) -> None:
    shown = min(n, CHART_MAKES)
    if shown == 0:
        return
    share = header.index("share")
    chart = book.add_chart({"type": "bar"})
    chart.add_series(
        {
            "name": "share of images",
            "categories": ["Brands", 1, 0, shown, 0],
            "values": ["Brands", 1, share, shown, share],
            "x_error_bars": {
                "type": "custom",
                "plus_values": _err(report, "share_high_95"),
                "minus_values": _err(report, "share_low_95"),
            },
        }
    )
    chart.set_title({"name": f"Brand share {report.week} (95 % interval)"})
    chart.set_x_axis({"num_format": "0%"})
    chart.set_y_axis({"reverse": True})
    chart.set_legend({"none": True})
    book.get_worksheet_by_name("Brands").insert_chart("N2", chart, {"x_scale": 1.4, "y_scale": 1.5})


def _err(report: WeeklyReport, bound: str) -> list[float]:
    """Error-bar lengths from the share to the interval's bound (Excel wants distances, not bounds)."""
    return [round(abs(r[bound] - r["share"]), 6) for r in report.brand_rows()[:CHART_MAKES]]


def _daily_chart(book: xlsxwriter.Workbook, n: int) -> None:
    if n == 0:
        return
    chart = book.add_chart({"type": "column"})
    for col, name in ((1, "posts"), (2, "images analysed"), (4, "unidentified")):
        chart.add_series({"name": name, "categories": ["Daily", 1, 0, n, 0], "values": ["Daily", 1, col, n, col]})
    chart.set_title({"name": "Daily activity"})
    book.get_worksheet_by_name("Daily").insert_chart("G2", chart, {"x_scale": 1.3})
