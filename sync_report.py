"""Reports as people and tools read them: an 80-column table, JSON, CSV, a self-contained
HTML page with charts, and the Prometheus text format; and the queue of open records.

Renders the data `rules.metrics` produces; computes nothing of its own.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sla_sync.rules.clock import ALL_TARGETS, TARGETS
from sla_sync.rules.durations import format_duration
from sla_sync.rules.load import AT_RISK_PCT  # the live gauges and page: one threshold

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

FORMATS = ("table", "json", "csv", "html", "prometheus")
#: Each target in a few letters, for narrow columns.
SHORT = {"first_response": "FR", "resolution": "RES", "next_response": "NR",
         "periodic_update": "PU", "pausable_update": "PAU", "time_to_own": "OWN",
         "agent_work_time": "AWT", "requester_wait_time": "RWT"}
#: The targets beyond first response and resolution, whose figures a report has where the
#: policy sets them (data["targets"]).
MORE_TARGETS = tuple(t for t in ALL_TARGETS if t not in TARGETS)


def write_report(out: Path, text: str) -> None:
    """Write beside and rename, so a reader (node_exporter's textfile collector) never sees
    half a file; on an OSError (a missing folder, a folder given as the file, permissions, a
    full disk) the partial file is removed and `out` is left as it was."""
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as sink:
            sink.write(text)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, out)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
EMPTY = "-"


def label(by: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v or '(none)'}" for k, v in by.items()) or "all"


def minutes(value: float | None) -> str:
    return EMPTY if value is None else format_duration(value * 60)


def short(value: float | None) -> str:
    """A duration in minutes in at most two units, for narrow columns: 29m, 18h51m, 1d6h."""
    if value is None:
        return EMPTY
    total = round(value)
    days, rest = divmod(total, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{mins:02d}m" if mins else f"{hours}h"
    return f"{mins}m"


def pct(value: float | None) -> str:
    return EMPTY if value is None else f"{100 * value:.1f}"


# -- table ---------------------------------------------------------------------------------

def table(data: Mapping[str, Any]) -> str:
    """Aligned columns that fit an 80-column terminal: the whole window, then each
    breakdown under its own heading."""
    head = (f"{'segment':<22} {'recs':>5} {'FRT p50':>7} {'RES p50':>7} {'FR ok%':>6} "
            f"{'RES ok%':>7} {'breach':>7} {'AHT':>6} {'esc%':>5}")
    lines = [f"SLA report: records created {data['since'][:16]} to {data['until'][:16]} UTC",
             "", head, "-" * len(head)]
    heading = None
    for seg in data["segments"]:
        fields = tuple(seg["by"])
        if fields and fields != heading:
            heading = fields
            lines.append(f"by {' / '.join(fields)}:")
        name = "/".join(v or "(none)" for v in seg["by"].values()) or "all"
        name = ("  " + name) if fields else name
        name = name if len(name) <= 22 else name[:21] + "~"
        breaches = "/".join(str(seg["breach_rate"][t]["count"]) for t in TARGETS)
        lines.append(
            f"{name:<22} {seg['records']:>5} "
            f"{short(seg['first_response_time']['p50_minutes']):>7} "
            f"{short(seg['resolution_time']['p50_minutes']):>7} "
            f"{pct(seg['compliance_rate']['first_response']):>6} "
            f"{pct(seg['compliance_rate']['resolution']):>7} {breaches:>7} "
            f"{_aht(seg['average_handling_time']):>6} "
            f"{pct(seg['escalation_rate']['rate']):>5}")
    lines += ["", "FRT/RES p50: median time to first response / resolution (calendar time)",
              "ok%: compliance, met / (met + extended + breached)",
              "breach: breached clocks, first response / resolution",
              *textwrap.wrap("AHT: mean worked time of solved records (where the helpdesk "
                             "records it; s: none did, mean time in "
                             f"{', '.join(data['work_statuses'])} instead); esc%: "
                             "records sla-sync escalated (its audit; people's escalations "
                             f"in JSON and CSV); {EMPTY}: nothing to count", 80)]
    if not data.get("audit", True):
        lines.append("no audit (a report from a file): every escalation counts as people's")
    lines += _extended(data)
    lines += _more_targets(data)
    lines += _ola_lines(data)
    return "\n".join(lines) + "\n"


def _extended(data: Mapping[str, Any]) -> list[str]:
    """A line for the clocks met with an agent's extension, where there are any (they count
    neither as met nor as breached)."""
    found = data["segments"][0].get("extended_rate", {}) if data["segments"] else {}
    counts = [f"{t.replace('_', ' ')} {v['count']}" for t, v in found.items() if v["count"]]
    return [f"extended (met with an agent's extension, not counted as met): "
            f"{', '.join(counts)}"] if counts else []


def _ola_lines(data: Mapping[str, Any]) -> list[str]:
    """The table's block for the OLAs: per segment, each OLA target's compliance and its
    breached clocks of those that counted."""
    olas = [(o["name"], o["target"]) for o in data.get("olas", ())]
    if not olas:
        return []
    head = f"{'segment':<22} {'OLA':<18} {'target':<16} {'ok%':>6} {'breached':>8} {'of':>5}"
    lines = ["", "OLAs (team targets; every cycle counted):", head, "-" * len(head)]
    for seg in data["segments"]:
        name = "/".join(v or "(none)" for v in seg["by"].values()) or "all"
        name = ("  " + name) if seg["by"] else name
        name = name if len(name) <= 22 else name[:21] + "~"
        for ola, target in olas:
            rate = seg["ola_breach_rate"][ola][target]
            shown = ola if len(ola) <= 18 else ola[:17] + "~"
            lines.append(f"{name:<22} {shown:<18} {target:<16} "
                         f"{pct(seg['ola_compliance_rate'][ola][target]):>6} "
                         f"{rate['count']:>8} {rate['of']:>5}")
            name = ""
    lines += textwrap.wrap("a breach counts under the team that held the record when the "
                           "clock ran out (by team_at_breach: from the assignment history)", 80)
    return lines


def _more_targets(data: Mapping[str, Any]) -> list[str]:
    """The table's block for the targets beyond first response and resolution that the
    policy sets: compliance and breached clocks (every cycle counted) per segment."""
    more = [t for t in data.get("targets", ()) if t in MORE_TARGETS]
    if not more:
        return []
    head = f"{'segment':<22} " + " ".join(f"{SHORT[t] + ' ok/br':>10}" for t in more)
    lines = ["", "more targets (every cycle counted):", head, "-" * len(head)]
    for seg in data["segments"]:
        name = "/".join(v or "(none)" for v in seg["by"].values()) or "all"
        name = ("  " + name) if seg["by"] else name
        name = name if len(name) <= 22 else name[:21] + "~"
        cells = [f"{pct(seg['compliance_rate'][t]) + '/' + str(seg['breach_rate'][t]['count']):>10}"
                 for t in more]
        lines.append(f"{name:<22} " + " ".join(cells))
    names = {"NR": "next response", "PU": "periodic update", "PAU": "pausable update",
             "OWN": "time to own", "AWT": "agent work time", "RWT": "requester wait time"}
    lines += textwrap.wrap("ok/br: compliance % / breached clocks; " + ", ".join(
        f"{SHORT[t]}: {names[SHORT[t]]}" for t in more), 80)
    return lines


def _aht(aht: Mapping[str, Any]) -> str:
    """The average handling time, marked `s` where it is time in work statuses."""
    text = short(aht["mean_minutes"])
    return text + "s" if aht["source"] == "work_statuses" else text


# -- json and csv --------------------------------------------------------------------------

def as_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


#: The CSV columns, in order: a stable, documented contract.
CSV_COLUMNS = (
    "segment", "records",
    *(f"{m}.{f}" for m in ("first_response_time", "resolution_time")
      for f in ("count", "mean_minutes", "p50_minutes", "p90_minutes", "mean_clock_minutes")),
    *(f"compliance_rate.{t}" for t in TARGETS),
    *(f"breach_rate.{t}.{f}" for t in TARGETS for f in ("rate", "count", "of")),
    "average_handling_time.count", "average_handling_time.mean_minutes",
    "average_handling_time.source", "time_in_work_statuses.count",
    "time_in_work_statuses.mean_minutes",
    "escalation_rate.rate", "escalation_rate.count", "escalation_rate.of",
    "escalation_rate.escalations", "escalation_rate.before_breach",
    "escalation_rate.after_breach",
    "people_escalation_rate.rate", "people_escalation_rate.count", "people_escalation_rate.of",
    # the newer targets: empty where the policy does not set them
    *(f"compliance_rate.{t}" for t in MORE_TARGETS),
    *(f"breach_rate.{t}.{f}" for t in MORE_TARGETS for f in ("rate", "count", "of")),
    *(f"{m}.{f}" for m in ("agent_work_time", "requester_wait_time")
      for f in ("count", "mean_minutes", "p50_minutes", "p90_minutes", "mean_clock_minutes")),
)


def _get(seg: Mapping[str, Any], dotted: str) -> Any:
    """A segment's value at a dotted path; None where it has none (a target the policy
    does not set)."""
    value: Any = seg
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def ola_columns(data: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The CSV's columns for the policy's OLAs, after CSV_COLUMNS: per OLA target, its
    compliance, breached clocks and clocks counted (column name, path in a segment)."""
    return [(f"ola.{o['name']}.{o['target']}.{column}", (key, o["name"], o["target"], *sub))
            for o in data.get("olas", ())
            for column, key, sub in (("compliance_rate", "ola_compliance_rate", ()),
                                     ("breach_count", "ola_breach_rate", ("count",)),
                                     ("of", "ola_breach_rate", ("of",)))]


def _at(seg: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = seg
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def as_csv(data: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    olas = ola_columns(data)
    writer.writerow([*CSV_COLUMNS, *(name for name, _ in olas)])
    for seg in data["segments"]:
        row = [";".join(f"{k}={v}" for k, v in seg["by"].items()), seg["records"]]
        row += ["" if (v := _get(seg, c)) is None else v for c in CSV_COLUMNS[2:]]
        row += ["" if (v := _at(seg, path)) is None else v for _, path in olas]
        writer.writerow(row)
    return out.getvalue()


# -- prometheus ----------------------------------------------------------------------------

class _Families:
    """Metric families being filled: one per name, in the order first used."""

    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, name: str, text: str, labels: Mapping[str, str], value: float,
            counter: bool = False) -> None:
        family = self.families.get(name)
        if family is None:
            # Imported here: only the Prometheus format needs it, and every sync would pay.
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
            kind = CounterMetricFamily if counter else GaugeMetricFamily
            family = kind(name, text, labels=list(labels))
            self.families[name] = family
        family.add_metric(list(labels.values()), value)

    def collect(self) -> Iterable[Any]:
        return iter(self.families.values())


def _segment_labels(data: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], dict[str, str]]]:
    """(segment, labels): without --by the whole window, unlabeled; with --by only the
    breakdowns' segments (the whole window is their sum: no unlabeled total beside them),
    each labeled with `by` (its fields) and every breakdown field ("" where not its own;
    "(none)" for a record without a value)."""
    segments = data["segments"]
    if len(segments) == 1:
        return [(segments[0], {})]
    fields = sorted({k for seg in segments for k in seg["by"]})
    return [(seg, {"by": ",".join(seg["by"]),
                   **{f: (seg["by"][f] or "(none)") if f in seg["by"] else "" for f in fields}})
            for seg in segments[1:]]


def _outcome_metrics(out: _Families, seg: Mapping[str, Any], labels: dict[str, str],
                     target: str) -> None:
    """A target's clocks that met or breached, and its compliance."""
    at = {**labels, "target": target}
    counts = seg["breach_rate"][target]
    extended = seg.get("extended_rate", {}).get(target, {}).get("count", 0)
    for outcome, value in (("met", counts["of"] - counts["count"] - extended),
                           ("extended", extended), ("breached", counts["count"])):
        out.add("sla_sync_window_clocks", "Clocks of the window's records that met or "
                "breached their target", {**at, "outcome": outcome}, value)
    if seg["compliance_rate"][target] is not None:
        out.add("sla_sync_compliance_ratio", "Met / (met + extended + breached)", at,
                seg["compliance_rate"][target])


def _window_metrics(out: _Families, seg: Mapping[str, Any], labels: dict[str, str]) -> None:
    out.add("sla_sync_window_records", "Records created in the report window", labels,
            seg["records"])
    for target, key in zip(TARGETS, ("first_response_time", "resolution_time"), strict=True):
        _outcome_metrics(out, seg, labels, target)
        for stat, text in (("mean", "Mean"), ("p50", "Median"), ("p90", "90th percentile of"),
                           ("mean_clock", "Mean SLA-clock")):
            value = seg[key][f"{stat}_minutes"]
            name = stat.replace("mean_clock", "clock_mean")
            if value is not None:
                out.add(f"sla_sync_{key}_{name}_seconds", f"{text} time from creation to "
                        f"{target.replace('_', ' ')}", labels, round(value * 60, 3))
    for target in MORE_TARGETS:
        if target in seg["compliance_rate"]:
            _outcome_metrics(out, seg, labels, target)
    for key in ("agent_work_time", "requester_wait_time"):
        for stat, text in (("mean", "Mean"), ("mean_clock", "Mean SLA-clock")):
            value = seg.get(key, {}).get(f"{stat}_minutes")
            if value is not None:
                out.add(f"sla_sync_{key}_{stat.replace('mean_clock', 'clock_mean')}_seconds",
                        f"{text} {key.replace('_', ' ')} of solved records", labels,
                        round(value * 60, 3))
    handling = seg["average_handling_time"]
    if handling["mean_minutes"] is not None:
        out.add("sla_sync_handling_time_mean_seconds", "Mean handling time of solved records "
                "(source: worked_time, or work_statuses where none records worked time)",
                {**labels, "source": handling["source"]}, round(handling["mean_minutes"] * 60, 3))
    in_statuses = seg["time_in_work_statuses"]["mean_minutes"]
    if in_statuses is not None:
        out.add("sla_sync_time_in_work_statuses_mean_seconds", "Mean time solved records spent "
                "in work statuses", labels, round(in_statuses * 60, 3))
    for key, text in (("escalation_rate", "Records sla-sync escalated / records"),
                      ("people_escalation_rate", "Records people escalated / records")):
        if seg[key]["rate"] is not None:
            out.add(f"sla_sync_{key.removesuffix('_rate')}_ratio", text, labels,
                    seg[key]["rate"])


def open_counts(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]
                ) -> dict[tuple[str, ...], dict[str, int]]:
    """Open records at risk (nearest target >= AT_RISK_PCT used, not breached) and breached
    now, per value of `fields`."""
    counts: dict[tuple[str, ...], dict[str, int]] = {}
    for row in rows:
        key = tuple(str(row[f]) for f in fields)
        slot = counts.setdefault(key, {"at_risk": 0, "breached": 0})
        if row["breached"]:
            slot["breached"] += 1
        elif row["elapsed_pct"] >= AT_RISK_PCT:
            slot["at_risk"] += 1
    return counts


def _open_metrics(out: _Families, data: Mapping[str, Any],
                  rows: Sequence[Mapping[str, Any]]) -> None:
    breakdowns = [tuple(seg["by"]) for seg in data["segments"][1:]]
    fields = sorted({f for b in breakdowns for f in b})
    for by in (list(dict.fromkeys(breakdowns)) or [()]):
        for key, counts in sorted(open_counts(rows, by).items()):
            labels = ({"by": ",".join(by), **{f: "" for f in fields},
                       **{f: v or "(none)" for f, v in zip(by, key, strict=True)}}
                      if by else {})
            out.add("sla_sync_open_at_risk", f"Open records with {AT_RISK_PCT:.0f}% or more of "
                    "their nearest target used, not breached", labels, counts["at_risk"])
            out.add("sla_sync_open_breached", "Open records with a running clock past its "
                    "target", labels, counts["breached"])


def prometheus(data: Mapping[str, Any], last_run: Mapping[str, Any] | None,
               queue_rows: Sequence[Mapping[str, Any]] = (),
               totals: Mapping[str, Any] | None = None) -> str:
    """The text exposition format, for node_exporter's textfile collector and `serve`'s
    /metrics: base units, one metric per statistic, counters named `_total`."""
    out = _Families()
    for seg, labels in _segment_labels(data):
        _window_metrics(out, seg, labels)
    _open_metrics(out, data, queue_rows)
    if totals is not None:
        for status, count in sorted(totals["runs"].items()):
            out.add("sla_sync_runs", "Syncs finished, by status", {"status": status}, count,
                    counter=True)
        for key, text in (("reads", "Records read by syncs"),
                          ("writes", "Records written by syncs"),
                          ("errors", "Errors in syncs")):
            out.add(f"sla_sync_{key}", text, {}, totals[key], counter=True)
        for (rule, when), count in sorted(totals["escalations"].items()):
            out.add("sla_sync_escalations", "Escalations sla-sync made, by rule, before or "
                    "after the record's first breach", {"rule": rule, "when": when}, count,
                    counter=True)
    if last_run is not None:
        for key, text in (("success", "1 when the last sync finished, 0 when it failed"),
                          ("duration_seconds", "Duration of the last sync"),
                          ("reads", "Records read by the last sync"),
                          ("writes", "Records written by the last sync"),
                          ("errors", "Errors in the last sync"),
                          ("timestamp_seconds", "When the last sync finished (Unix time)")):
            out.add(f"sla_sync_last_run_{key}", text, {}, last_run[key])
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(out)
    return generate_latest(registry).decode()


# -- the queue -----------------------------------------------------------------------------

def bar(pct_used: float, width: int = 10) -> str:
    filled = min(width, max(0, round(pct_used / 100 * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def queue_table(rows: Sequence[Mapping[str, Any]], by: str | None = None) -> str:
    """Open records, nearest target first, with a bar of the target used."""
    if not rows:
        return "no open records with a running clock\n"
    head = f"{'id':<9} {'sla':<15} {'target':<6} {'left':>8} {'used':<12} {'assignee'}"
    lines: list[str] = []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[by]) if by else "", []).append(row)
    for name in (sorted(groups) if by else [""]):
        if by:
            lines += ["", f"{by} = {name or '(none)'}"]
        lines += [head, "-" * 78]
        for row in groups[name]:
            target = SHORT.get(row["target"], row["target"])
            left = ("-" + short(-row["minutes_left"])) if row["minutes_left"] < 0 \
                else short(row["minutes_left"])
            used = bar(row["elapsed_pct"]) + ("!" if row["breached"] else
                                              ("p" if row["paused"] else " "))
            lines.append(f"{row['id']:<9.9} {row['sla']:<15.15} {target:<6} {left:>8} "
                         f"{used:<12} {row['assignee'] or '(unassigned)':<24.24}".rstrip())
    return "\n".join(lines).lstrip("\n") + "\n"


# -- html ------------------------------------------------------------------------------------

COLORS = {"first_response": "#2f6fb2", "resolution": "#d9822b"}


def _bars_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
                unit: str, chart_id: str, goal: float | None = None) -> str:
    """A horizontal grouped bar chart as inline SVG (values 0..1 shown as percent), with a
    dashed line at `goal`."""
    row_h, bar_h, left, width = 34, 12, 170, 420
    height = 30 + row_h * len(labels)
    out = [f'<svg class="chart" id="{chart_id}" role="img" aria-label="{html.escape(title)}" '
           f'width="{left + width + 60}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    if goal is not None:
        x = left + goal * width
        out.append(f'<line class="goal" x1="{x:.1f}" y1="12" x2="{x:.1f}" y2="{height - 4}" '
                   f'stroke="#b3261e" stroke-dasharray="4 3" data-goal="{goal}"/>'
                   f'<text x="{x:.1f}" y="10" text-anchor="middle">goal '
                   f'{100 * goal:.1f}%</text>')
    for i, name in enumerate(labels):
        y = 20 + i * row_h
        out.append(f'<text x="{left - 8}" y="{y + bar_h + 2}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        for j, (target, values) in enumerate(series.items()):
            value = values[i]
            by = y + j * (bar_h + 2)
            if value is None:
                out.append(f'<text x="{left + 4}" y="{by + bar_h - 2}" class="empty">'
                           f'no data</text>')
                continue
            w = max(1.0, value * width)
            out.append(f'<rect class="mark" x="{left}" y="{by}" width="{w:.1f}" '
                       f'height="{bar_h}" fill="{COLORS[target]}"><title>'
                       f'{html.escape(name)} {target}: {100 * value:.1f}{unit}</title></rect>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 2}">'
                       f'{100 * value:.1f}{unit}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _columns_chart(title: str, labels: Sequence[str],
                   series: Mapping[str, Sequence[float | None]], chart_id: str,
                   percent: bool = False) -> str:
    """A vertical (grouped) column chart as inline SVG; `percent`: values are 0..1 rates on a
    fixed 0-100% scale, else counts scaled to the largest."""
    groups = len(series)
    col_w = max(6, min(30, 560 // max(1, len(labels) * groups)))
    gap = max(4, col_w // 2)
    height, top, bottom, left = 240, 24, 62, 36
    peak = 1.0 if percent else float(max((v or 0 for vs in series.values() for v in vs),
                                         default=0) or 1)
    width = left + 10 + len(labels) * (groups * col_w + gap)
    plot = height - top - bottom
    out = [f'<svg class="chart" id="{chart_id}" role="img" aria-label="{html.escape(title)}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f'<line x1="{left}" y1="{top + plot}" x2="{width}" y2="{top + plot}" '
           f'stroke="#999"/>']
    if percent:
        for tick in (0.25, 0.5, 0.75, 1.0):
            y = top + plot * (1 - tick)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" '
                       f'stroke="#eee"/><text x="{left - 4}" y="{y + 4:.1f}" '
                       f'text-anchor="end">{tick * 100:.0f}%</text>')
    show_every = max(1, len(labels) // 16)
    for i, name in enumerate(labels):
        x0 = left + 6 + i * (groups * col_w + gap)
        for j, (key, values) in enumerate(series.items()):
            value = values[i]
            if value is None:
                continue
            h = plot * value / peak
            x = x0 + j * col_w
            if h <= 0:  # nothing to draw; the label (counts) still says 0
                if not percent:
                    out.append(f'<text x="{x + col_w / 2:.1f}" y="{top + plot - 4}" '
                               'text-anchor="middle">0</text>')
                continue
            shown = f"{100 * value:.1f}%" if percent else f"{value:.0f}"
            out.append(f'<rect class="mark" x="{x}" y="{top + plot - h:.1f}" '
                       f'width="{col_w - 1}" height="{max(h, 0.5):.1f}" '
                       f'fill="{COLORS.get(key, COLORS["first_response"])}"><title>'
                       f'{html.escape(name)} {key.replace("_", " ")}: {shown}</title></rect>')
            if not percent:
                out.append(f'<text x="{x + col_w / 2:.1f}" y="{top + plot - h - 4:.1f}" '
                           f'text-anchor="middle">{shown}</text>')
        if i % show_every == 0:
            cx = x0 + groups * col_w / 2
            out.append(f'<text x="{cx:.1f}" y="{top + plot + 14}" text-anchor="end" '
                       f'transform="rotate(-45 {cx:.1f} {top + plot + 14})">'
                       f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# Marks the page once the browser has laid the charts out: how many chart marks have a
# real size. The HTML test reads it back from headless Chromium.
_DRAWN_CHECK = """<script>
window.addEventListener("load", function () {
  var charts = document.querySelectorAll("svg.chart");
  var drawn = 0;
  charts.forEach(function (chart) {
    var marks = 0;
    chart.querySelectorAll(".mark").forEach(function (m) {
      var box = m.getBBox();
      if (box.width > 0 && box.height > 0) { marks += 1; }
    });
    chart.setAttribute("data-marks-drawn", String(marks));
    if (marks > 0) { drawn += 1; }
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
});
</script>"""

# Nothing may load from anywhere: the page is one file that works offline.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
svg text { font-size: 11px; fill: #333; } svg .empty { fill: #999; }
.note { font-size: 0.85em; color: #555; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
.breached { color: #b3261e; font-weight: 600; }
table.risk td, table.risk th, table.breaches td, table.breaches th { text-align: left; }
.better { color: #1e7b34; } .worse { color: #b3261e; }
"""


UTC_ZONE = ZoneInfo("UTC")

#: The headline figures: (key, name, kind, True where a higher value is better).
HEADLINES = (
    ("compliance.first_response", "First response compliance", "rate", True),
    ("compliance.resolution", "Resolution compliance", "rate", True),
    ("breaches.first_response", "First response breaches", "count", False),
    ("breaches.resolution", "Resolution breaches", "count", False),
    ("escalation_rate", "Escalated by sla-sync", "rate", False),
    ("aht_minutes", "Average handling time", "minutes", False),
)


def headline_figures(seg: Mapping[str, Any]) -> dict[str, float | None]:
    """A segment's headline figures by HEADLINES key (None: nothing to count)."""
    out: dict[str, float | None] = {}
    for target in TARGETS:
        out[f"compliance.{target}"] = seg["compliance_rate"][target]
        out[f"breaches.{target}"] = seg["breach_rate"][target]["count"]
    out["escalation_rate"] = seg["escalation_rate"]["rate"]
    out["aht_minutes"] = seg["average_handling_time"]["mean_minutes"]
    return out


def _figure(value: float | None, kind: str) -> str:
    if value is None:
        return EMPTY
    return {"rate": f"{pct(value)}%", "count": f"{value:.0f}"}.get(kind) or short(value)


def _change(now: float | None, before: float | None, kind: str) -> str:
    """The change from the previous period: points for rates, else the same unit."""
    if now is None or before is None:
        return EMPTY
    delta = now - before
    sign = "+" if delta > 0 else ("-" if delta < 0 else "±")
    if kind == "rate":
        return f"{sign}{abs(100 * delta):.1f} pts"
    return sign + (f"{abs(delta):.0f}" if kind == "count" else short(abs(delta)))


def _headline_rows(seg: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str:
    now = headline_figures(seg)
    # a period without records has nothing to compare with (its counts are not zeros)
    before = (headline_figures(previous) if previous is not None and previous["records"]
              else dict.fromkeys(now))
    rows = []
    statuses = seg["average_handling_time"]["source"] == "work_statuses"
    for key, name, kind, higher_better in HEADLINES:
        a, b = now[key], before[key]
        if key == "aht_minutes" and statuses:
            name += " (time in work statuses: none recorded worked time)"
        css = ""
        if a is not None and b is not None and a != b:
            css = "better" if (a > b) == higher_better else "worse"
        rows.append(f'<tr data-figure="{key}" data-now="{"" if a is None else a}" '
                    f'data-before="{"" if b is None else b}"><td>{name}</td>'
                    f"<td>{_figure(a, kind)}</td><td>{_figure(b, kind)}</td>"
                    f'<td class="{css}">{_change(a, b, kind)}</td></tr>')
    return "".join(rows)


def local_time(instant: str | None, zone: ZoneInfo) -> str:
    """A stored instant (ISO, UTC) as wall-clock minutes in `zone`."""
    if not instant:
        return EMPTY
    return datetime.fromisoformat(instant).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _cells(*values: Any) -> str:
    return "".join(f"<td>{html.escape(str(v))}</td>" for v in values)


def _link(text: str, url: str | None) -> str:
    """A record's id linked to the helpdesk (the connector's record URL, as alerts' {url})."""
    if not url or not url.startswith(("https://", "http://")):
        return f"<td>{html.escape(text)}</td>"
    return f'<td><a href="{html.escape(url)}">{html.escape(text)}</a></td>'


def _segment_rows(segs: Sequence[Mapping[str, Any]], name: Any = None) -> str:
    rows = []
    for s in segs:
        title = name(s) if name else label(s["by"])
        rows.append("<tr>" + _cells(
            title, s["records"], short(s["first_response_time"]["p50_minutes"]),
            short(s["resolution_time"]["p50_minutes"]),
            pct(s["compliance_rate"]["first_response"]), pct(s["compliance_rate"]["resolution"]),
            s["breach_rate"]["first_response"]["count"], s["breach_rate"]["resolution"]["count"],
            _aht(s["average_handling_time"]), pct(s["escalation_rate"]["rate"]),
            pct(s["people_escalation_rate"]["rate"])) + "</tr>")
    return "".join(rows)


def _risk_rows(queue_rows: Sequence[Mapping[str, Any]]) -> str:
    risk = []
    for row in queue_rows:
        left = (f"breached {short(-row['minutes_left'])} ago" if row["breached"]
                else f"{short(row['minutes_left'])} left")
        css = ' class="breached"' if row["breached"] else ""
        risk.append("<tr>" + _link(row["id"], row.get("url")) + _cells(
            row["subject"], row["sla"], row["target"].replace("_", " ")) +
            f"<td{css}>{html.escape(left)}</td><td>{row['elapsed_pct']:.0f}%</td>"
            f"<td>{html.escape(row['assignee'] or '(unassigned)')}</td></tr>")
    return "".join(risk) or "<tr><td>none</td></tr>"


def _breach_rows(found: Sequence[Mapping[str, Any]], zone: ZoneInfo) -> str:
    rows = []
    for row in found:
        rows.append("<tr>" + _link(row["id"], row.get("url")) + _cells(
            row["subject"], row["sla"], row["target"].replace("_", " "),
            local_time(row["breached_at"], zone), short(row["time_over_minutes"]),
            f"{row['group'] or '-'}/{row['assignee'] or '-'}", _did_short(row)) + "</tr>")
    return "".join(rows) or "<tr><td>none</td></tr>"


def _more_html(data: Mapping[str, Any]) -> str:
    """The table of the targets beyond first response and resolution the policy sets."""
    more = [t for t in data.get("targets", ()) if t in MORE_TARGETS]
    if not more:
        return ""
    head = "".join(f"<th>{html.escape(t.replace('_', ' '))} ok %</th><th>breaches</th>"
                   for t in more)
    rows = "".join("<tr>" + _cells(label(s["by"]), *(v for t in more for v in (
        pct(s["compliance_rate"][t]), s["breach_rate"][t]["count"]))) + "</tr>"
        for s in data["segments"])
    return (f'<h2>More targets</h2><table class="more"><tr><th>segment</th>{head}</tr>{rows}'
            "</table><p class=\"note\">Every cycle of a cyclic clock (next response, "
            "periodic and pausable update, time to own) counts.</p>")


def _ola_html(data: Mapping[str, Any]) -> str:
    """The OLAs' table: per segment, each OLA target's compliance and breaches."""
    olas = [(o["name"], o["target"]) for o in data.get("olas", ())]
    if not olas:
        return ""
    head = "".join(f"<th>{html.escape(ola)} {html.escape(t.replace('_', ' '))} ok %</th>"
                   "<th>breaches</th>" for ola, t in olas)
    rows = "".join("<tr>" + _cells(label(s["by"]), *(v for ola, t in olas for v in (
        pct(s["ola_compliance_rate"][ola][t]), s["ola_breach_rate"][ola][t]["count"])))
        + "</tr>" for s in data["segments"])
    return (f'<h2>Team targets (OLAs)</h2><table class="more"><tr><th>segment</th>{head}'
            f"</tr>{rows}</table><p class=\"note\">A breach counts under the team that held "
            "the record when the clock ran out.</p>")


_SEGMENT_HEADER = (
    "<th>records</th><th>FR p50</th><th>RES p50</th><th>FR ok %</th><th>RES ok %</th>"
    "<th>FR breaches</th><th>RES breaches</th><th>AHT</th><th>escalated by sla-sync %</th>"
    "<th>by people %</th></tr>")


def html_report(data: Mapping[str, Any], queue_rows: Sequence[Mapping[str, Any]],
                at_risk: int = 25, *, previous: Mapping[str, Any] | None = None,
                agents: Sequence[Mapping[str, Any]] = (),
                found: Sequence[Mapping[str, Any]] = (), goal: float = 0.95,
                zone: ZoneInfo = UTC_ZONE) -> str:
    """One self-contained page for a monthly review: no external files, no network.
    `previous`: the report of the period of equal length before, for the headline figures;
    `agents`: the segments by assignee; `found`: the breach audit's rows; times in `zone`."""
    segs = data["segments"]
    compliance = _bars_chart(
        "Compliance by segment", [label(s["by"]) for s in segs],
        {t: [s["compliance_rate"][t] for s in segs] for t in TARGETS}, "%",
        "compliance-chart", goal)
    buckets = data["trend"]["buckets"]
    trend = _columns_chart(
        f"Breach rate by {data['trend']['every']} of creation",
        [b["start"][:10] for b in buckets],
        {t: [b[t]["rate"] for b in buckets] for t in TARGETS}, "trend-chart", percent=True)
    dist = data["first_response_distribution"]
    distribution = _columns_chart(
        "First response times",
        [f"<= {short(d['upto_minutes'])}" if d["upto_minutes"] else "longer" for d in dist],
        {"first_response": [d["count"] for d in dist]}, "distribution-chart")
    legend = "".join(f'<span style="background:{c}"></span>{t.replace("_", " ")}'
                     for t, c in COLORS.items())
    tz = html.escape(zone.key)
    since, until = (html.escape(local_time(data[k], zone)) for k in ("since", "until"))
    before = (f"{html.escape(local_time(previous['since'], zone))} to {since}"
              if previous is not None else "none")
    agent_rows = _segment_rows(agents, lambda s: s["by"]["assignee"] or "(unassigned)")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>SLA report {since[:10]} to {until[:10]}</title>
<style>{_STYLE}</style></head>
<body>
<h1>SLA report: records created {since} to {until} ({tz})</h1>
<p>Clocks as of {html.escape(local_time(data['now'], zone))} ({tz}). Compliance counts clocks
that stopped or breached; a clock still running inside its target is not counted.</p>
<h2>Headline figures</h2>
<table class="headline"><tr><th>figure</th><th>this period</th><th>previous period</th>
<th>change</th></tr>{_headline_rows(segs[0], None if previous is None else previous["segments"][0])}
</table>
<p class="note">Previous period: records created {before} ({tz}), of equal length.</p>
<table><tr><th>segment</th>{_SEGMENT_HEADER}{_segment_rows(segs)}</table>
<p class="note">FR: first response; RES: resolution; p50: median time from creation (calendar
time); ok %: compliance, met / (met + breached); AHT: mean worked time of solved records
where the helpdesk records it; marked s where none did: mean time in
{html.escape(', '.join(data['work_statuses']))} until solved.</p>
{_more_html(data)}
{_ola_html(data)}
<h2>Compliance by segment against the goal ({100 * goal:.1f}%)</h2>
<p class="legend">{legend}</p>
{compliance}
<h2>Per agent</h2>
<table class="agents"><tr><th>assignee</th>{_SEGMENT_HEADER}{agent_rows or
'<tr><td>none</td></tr>'}</table>
<p class="note">Records by their assignee now; breached clocks by the assignee that held the
record at the breach.</p>
<h2>Breach trend</h2><p class="legend">{legend}</p>
{trend}
<p class="note">Buckets are UTC {html.escape(data['trend']['every'])}s.</p>
<h2>First response distribution</h2>
{distribution}
<h2>Breaches in the period</h2>
<table class="breaches"><tr><th>id</th><th>subject</th><th>SLA</th><th>target</th>
<th>breached ({tz})</th><th>over</th><th>team/assignee then</th><th>sla-sync did</th></tr>
{_breach_rows(found, zone)}</table>
<h2>At risk: open records nearest their target</h2>
<table class="risk"><tr><th>id</th><th>subject</th><th>SLA</th><th>target</th><th>time</th>
<th>used</th><th>assignee</th></tr>{_risk_rows(queue_rows[:at_risk])}</table>
{_DRAWN_CHECK}
</body></html>
"""


# -- the breach audit ------------------------------------------------------------------------

#: The breach audit's CSV columns, in order (`sla_sync_did`: "AT RULE ACTION FIELD=AFTER"
#: joined with " | ").
BREACH_COLUMNS = ("period", "id", "subject", "url", "sla", "target", "target_minutes",
                  "calendar", "created_at", "due_at", "breached_at", "stopped_at",
                  "time_over_minutes", "clock_over_minutes", "group", "assignee", "held_by",
                  "ola", "team_at_breach", "sla_sync_did")


def _did_text(row: Mapping[str, Any], sep: str = " | ") -> str:
    return sep.join(f"{d['at']} {d['rule']} {d['action']} {d['field']}={d['after']}"
                    for d in row["sla_sync_did"])


#: The breach list's instants, shown in --timezone (CSV: ISO 8601 with the zone's offset).
BREACH_INSTANTS = ("created_at", "due_at", "breached_at", "stopped_at")


def _in_zone(instant: str, zone: ZoneInfo) -> str:
    if zone.key == "UTC":
        return instant
    return datetime.fromisoformat(instant).astimezone(zone).isoformat(timespec="seconds")


def breaches_csv(data: Mapping[str, Any], zone: ZoneInfo = UTC_ZONE) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BREACH_COLUMNS)
    for row in data["breaches"]:
        writer.writerow(["" if row[c] is None else _in_zone(row[c], zone)
                         if c in BREACH_INSTANTS else row[c] for c in BREACH_COLUMNS[:-1]]
                        + [_did_text(row)])
    return out.getvalue()


def _did_short(row: Mapping[str, Any]) -> str:
    """What sla-sync did, in few characters: each action, once, with its first time from the
    breach (the rules are in JSON and CSV)."""
    seen: dict[str, str] = {}
    for did in row["sla_sync_did"]:
        mins = did["minutes_from_breach"]
        seen.setdefault(did["action"], f"{'+' if mins >= 0 else '-'}{short(abs(mins))}")
    return ", ".join(f"{action} {when}" for action, when in seen.items()) or "nothing"


def breaches_table(data: Mapping[str, Any], zone: ZoneInfo = UTC_ZONE) -> str:
    """One line per breached clock, under a heading per period (UTC, as the trend's
    buckets); times in `zone`."""
    lines = [f"SLA breaches: clocks that breached {data['since'][:16]} to "
             f"{data['until'][:16]} UTC", f"clocks as of {data['now'][:16]} UTC"
             + ("" if zone.key == "UTC" else f"; times in {zone.key}")]
    head = (f"{'id':<9} {'sla':<14} {'tgt':<3} {'breached':<11} {'over':>7}  "
            "team/assignee at breach")
    periods: dict[str, list[Mapping[str, Any]]] = {}
    for row in data["breaches"]:
        periods.setdefault(row["period"], []).append(row)
    for period, rows in periods.items():
        lines += ["", f"{data['every']} of {period[:10]}: {len(rows)} breached clock(s)",
                  head, "-" * 80]
        for row in rows:
            target = SHORT.get(row["target"], row["target"])
            holder = f"{row['group'] or '-'}/{row['assignee'] or '-'}"
            holder += "*" if row["held_by"] == "audit" else ""
            under = row["sla"] if row.get("ola") is None else f"OLA {row['ola']}"
            lines.append(f"{row['id']:<9.9} {under:<14.14} {target:<3} "
                         f"{local_time(row['breached_at'], zone)[5:]:<11} "
                         f"{short(row['time_over_minutes']):>7}  {holder:<.40}")
            did = textwrap.shorten(_did_short(row), 80 - 20, placeholder=" ...")
            lines.append(f"{'':<10}sla-sync: {did}")
    if not data["breaches"]:
        lines += ["", "no clock breached in the window"]
    lines += ["", "over: calendar time from the due time to the stop (or now). team/assignee:",
              "the record's now, taken back through sla-sync's own later reassignments (*);",
              "a person's reassignment is not known. sla-sync: its actions on the record,",
              "each first time from the breach (-: before it)"]
    return "\n".join(lines) + "\n"
