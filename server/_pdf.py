"""The monthly report and the per-trace compliance report as PDFs (reportlab). Untrusted text goes into table
cells as plain strings, never into Paragraph markup, so an agent called ``<b>`` is printed, not interpreted."""

from __future__ import annotations

import io
import math
from typing import Any

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

__all__ = ["render_monthly_pdf", "render_compliance_pdf"]

_TABLE_STYLE = TableStyle([
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
    ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
    ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b8c2cc")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
])


def _clip(value: Any, width: int = 40) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _finite(value: Any) -> float:
    """A sum over spans stored before cost_usd was capped can be inf (or null in JSON): shown, never a crash."""
    number = float(value or 0)
    return number if math.isfinite(number) else 0.0


def _money(value: Any) -> str:
    number = float(value or 0)
    return f"${number:,.4f}" if math.isfinite(number) else "overflow"


def _table(header: list[str], rows: list[list[str]], widths: list[float] | None = None) -> Table:
    table = Table([header, *rows] if rows else [header, ["(none)"] + [""] * (len(header) - 1)],
                  colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(_TABLE_STYLE)
    return table


def _daily_chart(days: list[dict[str, Any]]) -> Drawing:
    drawing = Drawing(170 * mm, 55 * mm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 12 * mm, 8 * mm, 152 * mm, 42 * mm
    chart.data = [[_finite(day["cost_usd"]) for day in days] or [0.0]]
    chart.categoryAxis.categoryNames = [day["date"][-2:] for day in days] or [""]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.valueMin = 0
    chart.bars[0].fillColor = colors.HexColor("#3b6ea5")
    drawing.add(chart)
    return drawing


def render_monthly_pdf(report: dict[str, Any], key_fingerprint: str) -> bytes:
    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    document = _document(buffer, f"AgentWatch monthly report {report['month']}")
    totals = report["totals"]
    story: list[Any] = [
        Paragraph(f"AgentWatch monthly report — {report['month']}", styles["Title"]),
        Paragraph(f"Period {report['from']} to {report['to']} (UTC). Generated {report['generated_at']}.",
                  styles["Normal"]),
        Spacer(1, 4 * mm),
        Paragraph("Summary", styles["Heading2"]),
        _table(["Traces", "Spans", "LLM calls", "Tokens", "Cost", "p50 / p95 latency", "Error rate", "Blocked"], [[
            f"{totals['traces']:,}", f"{totals['spans']:,}", f"{totals['llm_calls']:,}",
            f"{totals['total_tokens']:,}", _money(totals["cost_usd"]),
            f"{totals['latency_p50_ms'] or 0:.0f} / {totals['latency_p95_ms'] or 0:.0f} ms",
            f"{totals['error_rate'] * 100:.1f} %", f"{totals['blocked_calls']:,}"]]),
        Spacer(1, 4 * mm),
        Paragraph("Cost per day (USD)", styles["Heading2"]),
        _daily_chart(report["daily_cost"]),
        Paragraph("Cost by agent", styles["Heading2"]),
        _table(["Agent", "LLM calls", "Tokens", "Errors", "Blocked", "Cost"], [
            [_clip(a["agent_name"] or a["agent_id"] or "(no agent)"), f"{a['llm_calls']:,}",
             f"{a['input_tokens'] + a['output_tokens']:,}", f"{a['errors']:,}", f"{a['blocked']:,}",
             _money(a["cost_usd"])] for a in report["cost_by_agent"][:25]]),
        Paragraph("Cost by model", styles["Heading2"]),
        _table(["Model", "Provider", "LLM calls", "Tokens", "Cost"], [
            [_clip(m["model"]), _clip(m["provider"] or "", 20), f"{m['llm_calls']:,}",
             f"{m['input_tokens'] + m['output_tokens']:,}", _money(m["cost_usd"])]
            for m in report["cost_by_model"][:25]]),
        Paragraph("Most expensive traces", styles["Heading2"]),
        _table(["Trace", "Name", "Start", "Status", "Spans", "Cost"], [
            [t["trace_id"][:16], _clip(t["name"], 34), (t["start_time"] or "")[:19], t["status"],
             f"{t['span_count']:,}", _money(t["cost_usd"])] for t in report["top_traces"]]),
        Paragraph("Circuit breaker transitions (EU AI Act Art. 12 relevant events)", styles["Heading2"]),
        Paragraph(f"{report['circuit_breaker']['transitions']} transitions this month.", styles["Normal"]),
        _table(["Time", "Scope", "Event", "From → to", "Reason"], [
            [(t["time"] or "")[:19], _clip(f"{t['scope']}/{t['scope_id']}", 30), _clip(t["event"], 16),
             _clip(f"{t['from_state']} → {t['to_state']}", 24), _clip(t["reason"], 24)]
            for t in report["circuit_breaker"]["recent"][:30]]),
        Paragraph("Operator actions (human oversight of running agents)", styles["Heading2"]),
        Paragraph(f"{report['circuit_breaker']['operator_actions']} operator actions this month.", styles["Normal"]),
        _table(["Time", "Who", "Action", "Scope", "Why"], [
            [(a["time"] or "")[:19], _clip(a["actor"], 20), _clip(a["action"], 16),
             _clip(f"{a['scope']}/{a['scope_id']}", 30), _clip(a["reason"], 30)]
            for a in report["circuit_breaker"]["recent_operator_actions"][:30]]),
        Paragraph("Alerts", styles["Heading2"]),
        Paragraph(f"{report['alerts']['total']} alerts this month.", styles["Normal"]),
        _table(["Time", "Source", "Message", "Delivery"], [
            [(a["time"] or "")[:19], a["source"], _clip(a["message"], 60), _clip(a["delivery_status"] or "", 10)]
            for a in report["alerts"]["recent"][:30]]),
        Spacer(1, 6 * mm),
        _signature_note(key_fingerprint, styles),
    ]
    document.build(story)
    return buffer.getvalue()


def _signature_note(key_fingerprint: str, styles: Any) -> Paragraph:
    return Paragraph(
        "This file carries an RSA-PSS SHA-256 signature after its last %%EOF marker. Check it with "
        f"<font face='Courier'>agentwatch verify report.pdf</font>. Signing key fingerprint: "
        f"<font face='Courier' size='7'>{key_fingerprint}</font>", styles["Normal"])


def _document(buffer: io.BytesIO, title: str) -> SimpleDocTemplate:
    return SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                             bottomMargin=16 * mm, title=title, author="AgentWatch")


_ROWS_SHOWN = 50


def render_compliance_pdf(report: dict[str, Any], key_fingerprint: str) -> bytes:
    """One trace's EU AI Act Article 12 record: the trace, its readiness score item by item, who acted, the
    model calls and the risk events (``_compliance.compliance_report`` builds ``report``)."""
    styles = getSampleStyleSheet()
    cell = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    buffer = io.BytesIO()
    trace, score = report["trace"], report["score"]
    document = _document(buffer, f"AgentWatch compliance report {trace['trace_id']}")

    def text(value: Any) -> Paragraph:
        # Wrapped cell text for long evidence; escaped, so that it stays plain text.
        escaped = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Paragraph(escaped, cell)

    calls, risks = report["model_calls"], report["risk_events"]
    story: list[Any] = [
        Paragraph("AgentWatch compliance report", styles["Title"]),
        Paragraph(f"{score['regulation']}. Generated {report['generated_at']}.", styles["Normal"]),
        Spacer(1, 4 * mm),
        Paragraph("Trace", styles["Heading2"]),
        _table(["Field", "Value"], [
            ["Trace id", trace["trace_id"]], ["Name", _clip(trace.get("name"), 80)],
            ["Start (UTC)", trace.get("start_time") or ""], ["End (UTC)", trace.get("end_time") or ""],
            ["Duration", f"{float(trace.get('duration_ms') or 0):,.1f} ms"], ["Status", trace.get("status") or ""],
            ["Spans", f"{trace.get('span_count', 0):,}"], ["LLM calls", f"{trace.get('llm_calls', 0):,}"],
            ["Tokens", f"{trace.get('total_tokens', 0):,}"], ["Cost", _money(trace.get("cost_usd"))],
        ], [40 * mm, 130 * mm]),
        Paragraph(f"Article 12 readiness: {score['score']} / {score['max_score']}", styles["Heading2"]),
        _table(["Requirement", "Article", "Points", "Evidence"], [
            [text(item["description"]), text(item["article"]), f"{item['points']} / {item['max_points']}",
             text(item["evidence"])] for item in score["items"]], [52 * mm, 26 * mm, 16 * mm, 80 * mm]),
        Paragraph(score["note"], styles["Italic"]),
        Paragraph("Agents and persons involved", styles["Heading2"]),
        _table(["Agent", "Id", "Role", "Spans", "LLM calls", "Cost"], [
            [_clip(a["agent_name"], 30), _clip(a["agent_id"], 24), _clip(a["agent_role"], 20), f"{a['spans']:,}",
             f"{a['llm_calls']:,}", _money(a["cost_usd"])] for a in report["agents"][:_ROWS_SHOWN]]),
        Paragraph(f"Model calls ({len(calls):,}{f', first {_ROWS_SHOWN} shown' if len(calls) > _ROWS_SHOWN else ''})",
                  styles["Heading2"]),
        _table(["Start (UTC)", "Agent", "Model", "Provider", "Tokens in / out", "Cost", "Status"], [
            [(c["start_time"] or "")[:23], _clip(c["agent"], 18), _clip(c["model"], 22), _clip(c["provider"], 12),
             f"{c['input_tokens']:,} / {c['output_tokens']:,}", _money(c["cost_usd"]), c["status"]]
            for c in calls[:_ROWS_SHOWN]]),
        Paragraph(f"Risk events: errors, blocked calls, breaker transitions ({len(risks):,}"
                  f"{f', first {_ROWS_SHOWN} shown' if len(risks) > _ROWS_SHOWN else ''})", styles["Heading2"]),
        _table(["Start (UTC)", "Kind", "Name", "Status", "Cause"], [
            [(r["start_time"] or "")[:23], r["kind"], _clip(r["name"], 30), r["status"], text(_clip(r["cause"], 120))]
            for r in risks[:_ROWS_SHOWN]], [34 * mm, 16 * mm, 44 * mm, 16 * mm, 64 * mm]),
        Spacer(1, 6 * mm),
        _signature_note(key_fingerprint, styles),
    ]
    document.build(story)
    return buffer.getvalue()
