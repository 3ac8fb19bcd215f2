"""latency.svg for the benchmark: box plots on a log-scale µs axis, written by hand (stdlib only).

Two panels: the fusion payoff (fused vs unfused end-to-end latency per call style and K) and the
proxy cost (serve vs the bare Python server per concurrency, with throughput). Boxes span
p25-p75 with a line at p50; whiskers span p1-p99.
"""

import math
from xml.sax.saxutils import escape

WIDTH = 1000
COLORS = {"fused": "#1f77b4", "unfused": "#ff7f0e", "serve": "#2ca02c", "bare": "#7f7f7f"}
LABELS = {"fused": "fused (in-process call)", "unfused": "unfused (call through serve)",
          "serve": "fusionizer serve (2 workers)", "bare": "bare Python ThreadingHTTPServer"}
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def _text(x, y, text, size=12, anchor="middle", weight="normal", extra=""):
    return '<text x="{0:.1f}" y="{1:.1f}" font-size="{2}" text-anchor="{3}" font-weight="{4}" {5} {6}>{7}</text>'.format(
        x, y, size, anchor, weight, FONT, extra, escape(text))


def _decades(values):
    low = math.floor(math.log10(max(min(values), 1e-3)))
    high = math.ceil(math.log10(max(values) * 2.5))  # headroom for the labels
    if high == low:
        high += 1
    return low, high


def _panel(out, top, height, title, groups, series, note):
    """groups: [(label, {series: summary})]; draws one box per series per group."""
    left, right = 90, WIDTH - 20
    plot_top, plot_bottom = top + 52, top + height - 60
    values = [s[p] for _, cells in groups for s in cells.values() if s.get("n")
              for p in ("p1", "p99")]
    low, high = _decades(values)

    def y_of(v):
        frac = (math.log10(max(v, 10 ** low)) - low) / (high - low)
        return plot_bottom - frac * (plot_bottom - plot_top)

    out.append(_text(WIDTH / 2, top + 22, title, size=16, weight="bold"))
    out.append('<rect x="{0}" y="{1}" width="{2}" height="{3}" fill="none" stroke="#333"/>'.format(
        left, plot_top, right - left, plot_bottom - plot_top))
    for d in range(low, high + 1):
        y = y_of(10 ** d)
        out.append('<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#ccc"/>'.format(left, right, y))
        label = "{0:,}".format(int(10 ** d)) if d >= 0 else "{0:g}".format(10 ** d)
        out.append(_text(left - 8, y + 4, label, size=11, anchor="end"))
        if d < high:
            for m in range(2, 10):
                ym = y_of(m * 10 ** d)
                out.append('<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#eee"/>'.format(left, left + 6, ym))
    out.append(_text(24, (plot_top + plot_bottom) / 2, "latency (µs, log scale)", size=12,
                     extra='transform="rotate(-90 24 {0:.1f})"'.format((plot_top + plot_bottom) / 2)))
    slot = (right - left) / len(groups)
    box_w = min(28.0, slot / (len(series) + 1.5))
    for gi, (label, cells) in enumerate(groups):
        center = left + slot * (gi + 0.5)
        if gi:
            out.append('<line x1="{0:.1f}" x2="{0:.1f}" y1="{1}" y2="{2}" stroke="#f0f0f0"/>'.format(
                left + slot * gi, plot_top, plot_bottom))
        for line_no, part in enumerate(label.split("\n")):
            out.append(_text(center, plot_bottom + 18 + 14 * line_no, part, size=11))
        for si, name in enumerate(series):
            s = cells.get(name)
            if not s or not s.get("n"):
                continue
            x = center + (si - (len(series) - 1) / 2.0) * (box_w + 6)
            color = COLORS[name]
            y1, y99 = y_of(s["p1"]), y_of(s["p99"])
            y25, y50, y75 = y_of(s["p25"]), y_of(s["p50"]), y_of(s["p75"])
            out.append('<line x1="{0:.1f}" x2="{0:.1f}" y1="{1:.1f}" y2="{2:.1f}" stroke="{3}"/>'.format(x, y1, y99, color))
            for yy in (y1, y99):
                out.append('<line x1="{0:.1f}" x2="{1:.1f}" y1="{2:.1f}" y2="{2:.1f}" stroke="{3}"/>'.format(
                    x - box_w / 4, x + box_w / 4, yy, color))
            out.append('<rect x="{0:.1f}" y="{1:.1f}" width="{2:.1f}" height="{3:.1f}" fill="{4}" fill-opacity="0.35" stroke="{4}"/>'.format(
                x - box_w / 2, y75, box_w, max(1.0, y25 - y75), color))
            out.append('<line x1="{0:.1f}" x2="{1:.1f}" y1="{2:.1f}" y2="{2:.1f}" stroke="{3}" stroke-width="2.5"/>'.format(
                x - box_w / 2, x + box_w / 2, y50, color))
            if "extra" in s:
                out.append(_text(x, y99 - 6, s["extra"], size=9))
    # legend
    lx = left + 10
    for name in series:
        out.append('<rect x="{0}" y="{1}" width="14" height="10" fill="{2}" fill-opacity="0.35" stroke="{2}"/>'.format(
            lx, plot_top + 8, COLORS[name]))
        out.append(_text(lx + 20, plot_top + 17, LABELS[name], size=11, anchor="start"))
        lx += 30 + 6.5 * len(LABELS[name])
    out.append(_text(WIDTH / 2, top + 40, note, size=10, extra='fill="#555"'))


def render(results, ks, styles, concurrency):
    out = []
    payoff_groups = []
    for style, _ in styles:
        for k in ks:
            e = results["payoff"]["{0}/k{1}".format(style, k)]
            payoff_groups.append(("K={0}\n{1}".format(k, style),
                                  {m: e[m]["latency_us"] for m in ("fused", "unfused")}))
            payoff_groups[-1][1]["unfused"] = dict(payoff_groups[-1][1]["unfused"],
                                                   extra="{0:.0f}×".format(e["ratio_p50"]))
    proxy_groups = []
    for c in concurrency:
        e = results["proxy"]["c{0}".format(c)]
        cells = {target: e[target]["latency_us"] for target in ("serve", "bare")}
        proxy_groups.append(("concurrency {0}\nserve {1:,.0f} req/s, bare {2:,.0f} req/s".format(
            c, e["serve"]["throughput_rps"], e["bare"]["throughput_rps"]), cells))
    height1, height2 = 420, 360
    m = results["machine"]
    out.append('<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}">'.format(
        WIDTH, height1 + height2 + 30))
    out.append('<rect width="100%" height="100%" fill="white"/>')
    _panel(out, 0, height1, "Fusion payoff: entry task making K synchronous calls to a sibling (end to end)",
           payoff_groups, ("fused", "unfused"), "box p25–p75, line p50, whiskers p1–p99; label: unfused/fused p50")
    _panel(out, height1, height2, "Proxy cost: trivial task, serve vs bare Python server",
           proxy_groups, ("serve", "bare"), "box p25–p75, line p50, whiskers p1–p99; throughput below each group")
    out.append(_text(WIDTH / 2, height1 + height2 + 18,
                     "fusionizer bench, {0}; {1} cores, {2}; load average {3}".format(
                         results["date"], m["cores"], m["cpu"], " / ".join(map(str, m["loadavg_start"]))),
                     size=10, extra='fill="#555"'))
    out.append("</svg>\n")
    return "\n".join(out)
