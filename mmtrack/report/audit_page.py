"""The one-page report of an experiment (`mmtrack report`): one self-contained HTML file (styles and figures inline,
opens offline) with the study design, the summary, every sheet with its axis effects and noise floors, the
selection experiment, prediction multiplicity and the most contested test examples.

Every number a section shows carries its full value in a `data-value` attribute next to the rounded text, so a
test (or a script) can check the page against `mmtrack sheet/select --format json` without parsing prose."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmtrack.analysis.audit import Audit
from mmtrack.analysis.cells import format_value
from mmtrack.analysis.ensembles import EnsembleFindings
from mmtrack.analysis.multiplicity import Multiplicity
from mmtrack.report._figure import new_figure
from mmtrack.report._text import html_page
from mmtrack.report.selection_report import caption as selection_caption
from mmtrack.report.selection_report import selection_figure, wide_table
from mmtrack.report.sheet_report import _html as sheet_html
from mmtrack.report.sheet_report import footer
from mmtrack.report.summary_report import SUMMARY_HEADERS, summary_cells, summary_note

esc = html.escape
SECTIONS = ("design", "summary", "sheets", "selection", "multiplicity", "contested")


def _png(fig, dpi: int = 110) -> str:
    """An inline <img> of a figure (PNG, base64)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="figure" alt="figure" src="data:image/png;base64,{data}">'


def _value(x: float | None, text: str) -> str:
    return (
        f'<td data-value="{"" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))}">'
        f"{esc(text)}</td>"
    )


def _share(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _design(audit: Audit) -> str:
    st = audit.study or {}
    d = audit.design
    rows = [("experiment", audit.experiment), ("FINISHED runs", str(audit.n_runs))]
    if st:
        rows += [
            ("dataset", str(st.get("dataset", ""))),
            ("design", str(st.get("design", ""))),
            ("epochs", str(st.get("epochs", ""))),
            ("seeds", ", ".join(map(str, st.get("seeds", [])))),
        ]
        if st.get("fixed"):
            rows.append(("fixed", ", ".join(f"{k}={format_value(v)}" for k, v in st["fixed"].items())))
        if st.get("interventions"):
            rows.append(("interventions", "; ".join(map(str, st["interventions"]))))
    rows.append(("default", ", ".join(f"{k}={format_value(v)}" for k, v in d.default.items())))
    rows += [(f"axis {axis}", ", ".join(format_value(v) for v in values)) for axis, values in d.axes.items()]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>\n" for k, v in rows)
    desc = f"<p>{esc(st['description'])}</p>\n" if st.get("description") else ""
    return f'<section id="design"><h2>Study design</h2>\n{desc}<table class="design">\n{body}</table>\n</section>\n'


def _summary(audit: Audit) -> str:
    df = audit.summary
    head = "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADERS)
    numeric = (
        "delta_max_all",
        "ratio_to_acc",
        None,
        "top_axis_eta_squared",
        "top_axis_p_value",
        "top_axis_delta_max",
        "noise_floor_all",
    )
    rows = []
    for record, cells in zip(df.to_dict(orient="records"), summary_cells(df, 2)):
        tds = [f"<td>{esc(cells[0])}</td>"]
        for col, text in zip(numeric, cells[1:]):
            tds.append(f"<td>{esc(text)}</td>" if col is None else _value(record[col], text))
        rows.append(f'<tr data-metric="{esc(record["metric"])}">' + "".join(tds) + "</tr>")
    return (
        f'<section id="summary"><h2>Summary: multiplicity per metric</h2>\n<table class="summary">\n<tr>{head}</tr>'
        "\n" + "\n".join(rows) + f'\n</table>\n<p class="note">{esc(summary_note(df))}</p>\n</section>\n'
    )


def _sheets(audit: Audit, ui_url: str | None, experiment_id: str | None) -> str:
    parts = [
        '<section id="sheets"><h2>Multiplicity sheets</h2>\n<p>'
        + " · ".join(f'<a href="#sheet-{esc(s.metric)}">{esc(s.metric)}</a>' for s in audit.sheets)
        + "</p>"
    ]
    for s in audit.sheets:
        parts.append(
            f'<article class="sheet-section" id="sheet-{esc(s.metric)}" data-metric="{esc(s.metric)}" '
            f'data-delta-max-all="{"" if math.isnan(s.delta_max_all) else repr(s.delta_max_all)}">'
            f"<h3>{esc(s.metric)}</h3>\n<p><b>{esc(footer(s))}</b></p>\n"
            + sheet_html(s, 2, ui_url, experiment_id)
            + "</article>"
        )
    return "\n".join(parts) + "\n</section>\n"


def _selection(audit: Audit) -> str:
    rep = audit.selection
    if rep is None:
        line = next((n for n in audit.notes if n.startswith("selection:")), "no selection")
        return f'<section id="selection"><h2>Model selection</h2>\n<p class="note">{esc(line)}</p>\n</section>\n'
    table = wide_table(rep)
    head = "".join(f"<th>{esc(str(c))}</th>" for c in table.columns)
    groups = [("before", rep.before)] + [(o.selection.key, o.unseen) for o in rep.selections]
    body = []
    for row in table.itertuples(index=False):
        metric = row[0]
        tds = [f"<td>{esc(str(metric))}</td>"]
        for (key, stats), text in zip(groups, row[1:]):
            d = stats[metric].delta_max if metric in stats else None
            tds.append(
                f'<td data-selection="{esc(key)}" data-value="{"" if d is None else repr(d)}">{esc(str(text))}</td>'
            )
        body.append(f'<tr data-metric="{esc(str(metric))}">' + "".join(tds) + "</tr>")
    figure = _png(selection_figure(rep)) if rep.unseen else ""
    warns = "".join(f"<li>{esc(w)}</li>" for w in rep.warnings)
    return (
        f'<section id="selection"><h2>Model selection</h2>\n<p>{esc(selection_caption(rep))}.</p>\n'
        f'<table class="selection">\n<tr>{head}</tr>\n'
        + "\n".join(body)
        + "\n</table>\n"
        + figure
        + (f'<ul class="note">{warns}</ul>' if warns else "")
        + "\n</section>\n"
    )


def _mult_row(label: str, m: Multiplicity, attrs: str = "") -> str:
    return (
        f"<tr{attrs}><th>{esc(label)}</th><td>{m.n_models}</td><td>{m.n_examples}</td>"
        + _value(m.ambiguity, _share(m.ambiguity))
        + _value(m.discrepancy, _share(m.discrepancy))
        + _value(m.contested, _share(m.contested))
        + "</tr>"
    )


MULT_HEAD = (
    "<tr><th>models</th><th>models</th><th>test examples</th><th>ambiguity</th><th>discrepancy</th>"
    "<th>contested</th></tr>"
)


def _multiplicity(audit: Audit) -> str:
    out = ['<section id="multiplicity"><h2>Prediction multiplicity</h2>']
    if audit.overall is None:
        line = next((n for n in audit.notes if n.startswith("prediction multiplicity")), "no predictions")
        return out[0] + f'\n<p class="note">{esc(line)}</p>\n</section>\n'
    out.append(
        f"<p>Against the reference model (run <code>{esc(str(audit.reference))}</code>, the default "
        "configuration's first seed unless chosen): <b>ambiguity</b> = share of test examples some model "
        "predicts differently, <b>discrepancy</b> = the largest share one model predicts differently; "
        "<b>contested</b> = share of test examples on which the models do not all agree (Marx, Calmon &amp; "
        "Ustun, ICML 2020). Ambiguity equals the contested rate whenever the reference is one of the set; they "
        "differ for a selection that left the reference out.</p>"
    )
    out.append(
        '<table class="multiplicity" id="multiplicity-overall">'
        + MULT_HEAD.replace("<th>models</th>", "<th>set</th>", 1)
        + _mult_row("every run", audit.overall, ' data-set="overall"')
        + "</table>"
    )
    if audit.per_config:
        out.append(
            "<h3>Each configuration's seeds alone (multiplicity from the seed only)</h3>"
            '<p class="note">Reference: the configuration\'s first seed.</p>'
            '<table class="multiplicity" id="multiplicity-config">'
            + MULT_HEAD.replace("<th>models</th>", "<th>configuration</th>", 1)
            + "".join(_mult_row(c.label, c.multiplicity, f' data-set="{esc(c.label)}"') for c in audit.per_config)
            + "</table>"
        )
    if audit.per_group:
        where = (
            "the group evaluation set, the examples each group's accuracy (the fairness sheets) is measured on"
            if audit.group_population == "group"
            else "the test split's examples of each group"
        )
        out.append(
            "<h3>Per group: are some groups' examples contested more often?</h3>"
            f'<p class="note">Measured on {esc(where)}; "examples" is each rate\'s sample size.</p>'
            '<table class="multiplicity" id="multiplicity-group">'
            + MULT_HEAD.replace("<th>models</th>", "<th>group</th>", 1).replace("test examples", "examples")
            + "".join(_mult_row(g, m, f' data-set="{esc(g)}"') for g, m in audit.per_group.items())
            + "</table>"
        )
    notes = [n for n in audit.notes if n.startswith("prediction multiplicity")]
    out += [f'<p class="note">{esc(n)}</p>' for n in notes]
    return "\n".join(out) + "\n</section>\n"


def contested_figure(examples: Sequence[dict], images: np.ndarray, class_names: Sequence[str]):
    """A grid of the contested test examples: the image, its true label and groups, and the models' votes."""
    n = len(examples)
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig = new_figure(figsize=(2.1 * cols, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, ex in zip(axes, examples):
        img = np.asarray(images[ex["index"]])
        ax.imshow(np.transpose(img, (1, 2, 0)) if img.ndim == 3 else img, interpolation="nearest")
        votes = sorted(ex["votes"].items(), key=lambda kv: -kv[1])[:3]
        vote_text = ", ".join(f"{class_names[c] if c < len(class_names) else c} {share:.0%}" for c, share in votes)
        label = class_names[ex["label"]] if ex["label"] < len(class_names) else str(ex["label"])
        groups = ", ".join(str(v) for v in ex.get("groups", {}).values())
        ax.set_title(
            f"#{ex['index']} true {label}" + (f"\n{groups}" if groups else "") + f"\nvotes: {vote_text}", fontsize=7
        )
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("Most contested test examples (models' votes)", fontsize=10)
    return fig


def _contested(
    audit: Audit, images: np.ndarray | None, class_names: Sequence[str] | None, images_note: str | None
) -> str:
    out = ['<section id="contested"><h2>Contested examples</h2>']
    if not audit.contested:
        why = "no predictions stored" if audit.overall is None else "the models agree on every test example"
        return out[0] + f'\n<p class="note">{esc(why)}</p>\n</section>\n'
    names = list(class_names or [])

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    out.append(
        f"<p>The {len(audit.contested)} test examples on which the {audit.overall.n_models} models' votes are "
        "most divided (smallest majority first).</p>"
    )
    if images is not None:
        out.append(_png(contested_figure(audit.contested, images, names), dpi=100))
    elif images_note:
        out.append(f'<p class="note">{esc(images_note)}</p>')
    rows = ["<tr><th>test example</th><th>true label</th><th>groups</th><th>majority</th><th>votes</th></tr>"]
    for ex in audit.contested:
        votes = ", ".join(f"{name(c)} {s:.0%}" for c, s in sorted(ex["votes"].items(), key=lambda kv: -kv[1]))
        groups = ", ".join(f"{k}={v}" for k, v in ex.get("groups", {}).items())
        rows.append(
            f'<tr data-index="{ex["index"]}"><td>#{ex["index"]}</td><td>{esc(name(ex["label"]))}</td>'
            f"<td>{esc(groups)}</td>"
            + _value(ex["majority_share"], f"{name(ex['majority'])} {ex['majority_share']:.0%}")
            + f"<td>{esc(votes)}</td></tr>"
        )
    out.append('<table class="contested">' + "".join(rows) + "</table>")
    return "\n".join(out) + "\n</section>\n"


def _ship(audit: Audit) -> str:
    """Which model do I ship? Single models, ensembles and selective ensembles per group (`analysis.shipping`)."""
    df = audit.shipping

    def pct(x) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"

    head = "".join(f"<th>{h}</th>" for h in SHIP_HEADERS)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                esc(r.kind),
                esc(r.group),
                r.models,
                pct(r.acc),
                pct(r.abstain),
                pct(r.answered_acc),
                pct(r.ambiguity),
            )
        )
        + "</tr>"
        for r in df.itertuples()
    )
    overall = df[df["group"] == "all"].set_index("kind")
    said = [
        f"{esc(kind)}: {pct(r.acc)}% accuracy over all examples, abstaining on {pct(r.abstain)}%, "
        f"{pct(r.answered_acc)}% where it answers; "
        + (
            f"{pct(r.ambiguity)}% of examples still get different answers from two of its {r.models} models."
            if r.models > 1
            else "one model, so no ambiguity to measure."
        )
        for kind, r in overall.iterrows()
    ]
    return (
        '<section id="ship"><h2>Which model do I ship?</h2>'
        f"<p>One model, the mean-softmax ensemble of its seeds, or the selective ensemble (α = "
        f"{audit.selective_alpha:g}: it answers the members' vote only where a binomial test rejects a tie, and "
        "abstains elsewhere), on the population the group accuracies are measured on. Accuracy counts an abstention "
        "as an error; ambiguity = examples on which two models of the kind give different answers (abstentions are "
        "no answer).</p><ul>"
        + "".join(f"<li>{s}</li>" for s in said)
        + f'</ul><table class="ship">{head}{rows}</table></section>'
    )


SHIP_HEADERS = ("kind", "group", "models", "accuracy (%)", "abstains (%)", "accuracy where it answers (%)")
SHIP_HEADERS += ("ambiguity (%)",)


def _ensembles(f: EnsembleFindings) -> str:
    """Does ensembling help? One sentence per metric, the comparison table, prediction multiplicity, the price."""
    from mmtrack.report.ensemble_report import HEADERS, NOTE, _cells, ensemble_sentences

    out = [
        '<section id="ensembles"><h2>Does ensembling help?</h2>',
        f"<p>Each configuration's {f.members} seeds combined into one model (mean of their softmax, "
        "<code>mmtrack ensemble</code>) and measured like a single model: every intervention on the ensemble "
        "itself, PGD attacking the ensemble.</p>",
        "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in ensemble_sentences(f.comparison)) + "</ul>",
        '<table class="ensembles"><tr>'
        + "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in _cells(f.comparison))
        + f'</table><p class="note">{esc(NOTE)}</p>',
    ]
    names = list(f.multiplicity)
    head = (
        "<tr><th>set</th><th>models</th><th>examples</th><th>ambiguity</th><th>discrepancy</th><th>contested</th></tr>"
    )
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{m.n_models}</td><td>{m.n_examples}</td>"
        + "".join(_value(v, _share(v)) for v in (m.ambiguity, m.discrepancy, m.contested))
        + "</tr>"
        for k, m in f.multiplicity.items()
    )
    out.append(
        "<h3>Prediction multiplicity: do ensembles agree more?</h3>"
        '<p class="note">Reference: the default configuration\'s first seed (single models), its ensemble '
        "(ensembles).</p>"
        f'<table class="multiplicity" id="ensembles-multiplicity">{head}{rows}</table>'
    )
    if f.per_group:
        where = "group evaluation set" if f.group_population == "group" else "test split"
        ghead = (
            "<tr><th>group</th><th>examples</th>" + "".join(f"<th>contested: {esc(n)}</th>" for n in names) + "</tr>"
        )
        grows = "".join(
            f"<tr><th>{esc(g)}</th><td>{next(iter(d.values())).n_examples}</td>"
            + "".join(_value(d[n].contested, _share(d[n].contested)) for n in names)
            + "</tr>"
            for g, d in f.per_group.items()
        )
        out.append(
            f'<p class="note">Per group, on the {esc(where)}:</p>'
            f'<table class="multiplicity" id="ensembles-group">{ghead}{grows}</table>'
        )
    single, ens = f.eval_seconds.get("single"), f.eval_seconds.get("ensemble")
    if single and ens:
        out.append(
            f"<p>The price: evaluating one ensemble took {ens:.1f} s against {single:.1f} s for one single model "
            f"(mean per run, every intervention; models trained together share their evaluation), and every prediction it serves costs {f.members} forward passes "
            f"({f.members}× the inference cost of one model).</p>"
        )
    return "\n".join(out) + "\n</section>\n"


def rashomon_figure(curve: pd.DataFrame, epsilon: float, metric: str):
    """Δmax^all of each metric against ε (the models within ε of the best `metric`), the page's ε marked."""
    fig = new_figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for name, rows in curve.groupby("metric", sort=False):
        ax.plot(rows["epsilon"], rows["delta_max_all"], marker="o", markersize=3, linewidth=1.2, label=name)
    ax.axvline(epsilon, color="0.4", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"ε: models within ε points of the best {metric}")
    ax.set_ylabel("Δmax^all (pp)")
    ax.legend(fontsize=6, ncol=2, frameon=False)
    return fig


def _rashomon(audit: Audit) -> str:
    rs, curve = audit.rashomon, audit.rashomon_curve
    models = curve.drop_duplicates("epsilon")[["epsilon", "models"]]
    counts = ", ".join(f"{int(n)} at ε {e:.2f}" for e, n in zip(models["epsilon"], models["models"]))
    return (
        '<section id="rashomon"><h2>Among near-equal models (the ε-Rashomon set)</h2>\n'
        f"<p>{esc(rs.note(shown=12))}. Every section below is of this set.</p>\n"
        + _png(rashomon_figure(curve, rs.epsilon, rs.metric))
        + f'<p class="note">How much of each metric\'s spread survives among the models within ε of the best: '
        f"Δmax^all over the set, from ε = 0 (the best model alone) to the full spread (every model). Models: "
        f"{esc(counts)}.</p>\n</section>\n"
    )


def render_audit(
    audit: Audit,
    images: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    images_note: str | None = None,
    ui_url: str | None = None,
    experiment_id: str | None = None,
) -> str:
    """The report page. `images` (N, C, H, W uint8) are the test images the predictions index, for the contested
    examples figure; without them (`images_note` says why) the examples are listed as a table only."""
    sections = [
        *SECTIONS[:2],
        *(["rashomon"] if audit.rashomon_curve is not None else []),
        *SECTIONS[2:5],
        *(["ensembles"] if audit.ensembles is not None else []),
        *(["ship"] if audit.shipping is not None else []),
        *SECTIONS[5:],
    ]
    nav = " · ".join(f'<a href="#{s}">{s}</a>' for s in sections)
    other = [n for n in audit.notes if not n.startswith(("selection:", "prediction multiplicity"))]
    body = (
        f"<nav>{nav}</nav>\n"
        + _design(audit)
        + _summary(audit)
        + (_rashomon(audit) if audit.rashomon_curve is not None else "")
        + _sheets(audit, ui_url, experiment_id)
        + _selection(audit)
        + _multiplicity(audit)
        + (_ensembles(audit.ensembles) if audit.ensembles is not None else "")
        + (_ship(audit) if audit.shipping is not None else "")
        + _contested(audit, images, class_names, images_note)
        + "".join(f'<p class="note">{esc(n)}</p>' for n in other)
    )
    return html_page(f"Multiplicity report: {audit.experiment}", body)


__all__ = ["contested_figure", "render_audit"]
