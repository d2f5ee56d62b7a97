//! Markdown: `report.md` of `evalr score` and the compare report (a pull-request comment or
//! `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use super::{CALIBRATION_CHART, ExportError, Exporter};
use crate::score::compare::{Comparison, PairComparison};
use crate::score::stats::{ClusteredMean, Estimate, Percentiles};
use crate::score::summary::Summary;

pub struct MarkdownExporter;

/// Flipped rows listed by id in the Markdown (all of them are in the JSON).
pub const MAX_FLIPPED_LISTED: usize = 20;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Percentage points, signed.
fn pp(x: f64) -> String {
    let value = x * 100.0;
    // "-0.0" reads as a loss; print zero plainly.
    if value.abs() < 0.05 {
        "0.0 pp".to_string()
    } else {
        format!("{value:+.1} pp")
    }
}

fn ci(interval: [f64; 2]) -> String {
    format!("{} – {}", pct(interval[0]), pct(interval[1]))
}

fn ms(x: f64) -> String {
    format!("{x:.0} ms")
}

fn money(x: f64, currency: &str) -> String {
    let symbol = if currency == "USD" { "$" } else { "" };
    let suffix = if currency == "USD" {
        String::new()
    } else {
        format!(" {currency}")
    };
    if x != 0.0 && x.abs() < 0.01 {
        format!("{symbol}{x:.6}{suffix}")
    } else {
        format!("{symbol}{x:.4}{suffix}")
    }
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("–")
}

fn estimate_row(out: &mut String, name: &str, e: &Estimate) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {:.1} pp | {} |",
        pct(e.value),
        ci(e.ci95),
        e.se * 100.0,
        e.n
    );
}

fn latency_cells(p: &Percentiles) -> String {
    format!("{} / {} / {}", ms(p.p50), ms(p.p90), ms(p.p99))
}

impl Exporter<Summary> for MarkdownExporter {
    fn serialize(&self, s: &Summary) -> Result<Vec<u8>, ExportError> {
        let mut out = String::new();
        header_section(&mut out, s);
        rows_section(&mut out, s);
        accuracy_section(&mut out, s);
        positions_section(&mut out, s);
        calibration_section(&mut out, s);
        cost_section(&mut out, s);
        quota_section(&mut out, s);
        text_section(&mut out, s);
        judged_section(&mut out, s);
        quality_section(&mut out, s);
        Ok(out.into_bytes())
    }
}

/// The run table: what was run, by whom scored.
fn header_section(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "# evalr report: {}\n", s.run.run_id);
    let _ = writeln!(out, "| run | |\n|---|---|");
    let _ = writeln!(out, "| model | {} |", or_dash(s.run.model.as_deref()));
    if let Some(deployment) = &s.run.deployment {
        let _ = writeln!(out, "| deployment | {deployment} |");
    }
    let _ = writeln!(out, "| program | {} |", or_dash(s.run.program.as_deref()));
    let dataset = match s.rows.dataset_rows {
        Some(rows) => format!("{} ({rows} rows)", or_dash(s.run.dataset.as_deref())),
        None => or_dash(s.run.dataset.as_deref()).to_string(),
    };
    let _ = writeln!(out, "| dataset | {dataset} |");
    let _ = writeln!(out, "| status | {} |", s.run.status);
    let _ = writeln!(out, "| scored by | {} |\n", s.scored_by);
}

/// The row counts line, with failed rows by kind.
fn rows_section(out: &mut String, s: &Summary) {
    let r = &s.rows;
    let _ = write!(
        out,
        "Rows: {} in outputs.jsonl ({} correct, {} wrong, {} unparsed, {} refused, {} unscored)",
        r.outputs, r.correct, r.wrong, r.unparsed, r.refused, r.unscored
    );
    if r.failed > 0 {
        let kinds: Vec<String> = r
            .failed_by_kind
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let _ = write!(
            out,
            "; {} failed for good in errors.jsonl ({}), not counted in accuracy",
            r.failed,
            kinds.join(", ")
        );
    }
    let _ = writeln!(out, ".");
    if r.torn_last_line {
        let _ = writeln!(
            out,
            "\n> The last line of outputs.jsonl was cut mid-write (interrupted run) and was left out."
        );
    }
    out.push('\n');
}

/// Accuracy with intervals, by subject and by dataset.
fn accuracy_section(out: &mut String, s: &Summary) {
    if let Some(accuracy) = &s.accuracy {
        let _ = writeln!(out, "## Accuracy\n");
        let _ = writeln!(out, "| measure | value | 95% CI (Wilson) | SE | rows |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        estimate_row(out, "accuracy (micro)", &accuracy.micro);
        let label = format!("accuracy (macro over {} subjects)", s.subjects.len());
        estimate_row(out, &label, &accuracy.macro_subject);
        estimate_row(
            out,
            "invalid answers (unparsed + refused)",
            &accuracy.invalid_rate,
        );
        out.push('\n');
        clustered_line(out, &accuracy.clustered_by_subject);
        group_table(out, "By subject", "subject", &s.subjects);
        if s.datasets.len() > 1 {
            group_table(out, "By dataset", "dataset", &s.datasets);
        }
    }
}

/// The micro accuracy's error bars clustered by subject (Miller 2024), or, with one subject,
/// the unclustered ones and why.
fn clustered_line(out: &mut String, c: &ClusteredMean) {
    let _ = match c.se_clustered {
        Some(se) => writeln!(
            out,
            "Clustered by subject ({} subjects): SE {:.1} pp, 95% CI {} (Miller 2024, no small-sample correction).\n",
            c.clusters,
            se * 100.0,
            ci(c.ci95)
        ),
        None => writeln!(
            out,
            "Error bars {}: SE {:.1} pp, 95% CI {} (clustering by subject needs two subjects or more).\n",
            unclustered(c.clusters),
            c.se * 100.0,
            ci(c.ci95)
        ),
    };
}

/// "unclustered: 1 subject", said wherever an unclustered error stands in for a clustered one.
fn unclustered(clusters: u64) -> String {
    let subjects = if clusters == 1 { "subject" } else { "subjects" };
    format!("unclustered: {clusters} {subjects}")
}

/// The confusion of correct and chosen answer positions.
fn positions_section(out: &mut String, s: &Summary) {
    if let Some(bias) = &s.position_bias {
        let _ = writeln!(out, "## Answer positions\n");
        let _ = writeln!(
            out,
            "Rows: correct position; columns: chosen position (rows with a parsed answer).\n"
        );
        let _ = writeln!(
            out,
            "| correct \\ chosen | {} | share correct |",
            bias.positions.join(" | ")
        );
        let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(bias.positions.len()));
        for (i, row) in bias.matrix.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                bias.positions[i],
                cells.join(" | "),
                pct(bias.correct_share[i])
            );
        }
        let shares: Vec<String> = bias.chosen_share.iter().map(|x| pct(*x)).collect();
        let _ = writeln!(out, "| share chosen | {} | |\n", shares.join(" | "));
    }
}

/// Calibration measures and bins.
fn calibration_section(out: &mut String, s: &Summary) {
    if let Some(cal) = &s.calibration {
        let _ = writeln!(out, "## Calibration\n");
        let _ = writeln!(
            out,
            "{} rows with option probabilities. Brier {:.4} (multi-class, 0 best), log loss {:.4}, ECE {:.4} (10 equal-width confidence bins).\n",
            cal.n, cal.brier, cal.log_loss, cal.ece
        );
        let _ = writeln!(out, "| confidence | rows | mean confidence | accuracy |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for bin in cal.bins.iter().filter(|b| b.n > 0) {
            let _ = writeln!(
                out,
                "| {:.1}–{:.1} | {} | {} | {} |",
                bin.lower,
                bin.upper,
                bin.n,
                pct(bin.confidence),
                pct(bin.accuracy)
            );
        }
        let _ = writeln!(out, "\n![calibration curve]({CALIBRATION_CHART})\n");
    }
}

/// Tokens (cached prompt and reasoning apart), cost, latency, throughput, retries.
fn cost_section(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "## Cost and speed\n");
    let _ = writeln!(out, "| measure | value |\n|---|---:|");
    let t = &s.tokens;
    let _ = writeln!(
        out,
        "| tokens (prompt / completion / total) | {} / {} / {} |",
        t.prompt, t.completion, t.total
    );
    if t.cached_prompt > 0 {
        let _ = writeln!(
            out,
            "| prompt tokens served from the prompt cache | {} |",
            t.cached_prompt
        );
    }
    if t.reasoning > 0 {
        let _ = writeln!(
            out,
            "| completion tokens spent reasoning | {} |",
            t.reasoning
        );
    }
    let _ = writeln!(out, "| tokens per row | {:.1} |", t.per_row);
    match &s.cost {
        Some(cost) => {
            let _ = writeln!(out, "| cost | {} |", money(cost.total, &cost.currency));
            let per_correct = cost
                .per_correct
                .map(|c| money(c, &cost.currency))
                .unwrap_or_else(|| "–".to_string());
            let _ = writeln!(out, "| cost per correct answer | {per_correct} |");
            if cost.parts.cached_input > 0.0 {
                let _ = writeln!(
                    out,
                    "| of which cached prompt tokens | {} |",
                    money(cost.parts.cached_input, &cost.currency)
                );
            }
            let source = cost.price_source.describe(true);
            let cached = cost
                .cached_input_per_mtok
                .map(|rate| format!(", cached input {}", money(rate, &cost.currency)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| price per 1M tokens (input / output) | {} / {}{cached} ({source}) |",
                money(cost.input_per_mtok, &cost.currency),
                money(cost.output_per_mtok, &cost.currency)
            );
        }
        None => {
            let _ = writeln!(out, "| cost | unknown |");
        }
    }
    if let Some(latency) = &s.latency_ms {
        let _ = writeln!(
            out,
            "| latency p50 / p90 / p99 | {} |",
            latency_cells(latency)
        );
    }
    if let Some(throughput) = &s.throughput {
        let _ = writeln!(
            out,
            "| throughput | {:.2} rows/s over {:.1} s |",
            throughput.rows_per_second, throughput.wall_seconds
        );
    }
    let re = &s.retries;
    let _ = writeln!(
        out,
        "| retries (rows retried) | {} ({}) |\n| rate limited (429) | {} |\n| rows answered from cache | {} |",
        re.retries, re.rows_retried, re.rate_limited, re.cached_rows
    );
    if let Some(note) = &s.cost_note {
        let _ = writeln!(out, "\n> {note}");
    }
    out.push('\n');
}

/// How the limiter paced each deployment: what it was told, what it learned, the 429s, and
/// the pace over the run.
fn quota_section(out: &mut String, s: &Summary) {
    if s.quota.is_empty() {
        return;
    }
    let per_minute = |x: Option<f64>| x.map_or_else(|| "–".to_string(), |x| format!("{x:.0}"));
    let configured = |x: Option<u32>| x.map_or_else(|| "not set".to_string(), |x| x.to_string());
    let _ = writeln!(out, "## Quota\n");
    let _ = writeln!(
        out,
        "| deployment | paced by | configured rpm / tpm | learned rpm / tpm | requests | 429s | in flight |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---|");
    for q in &s.quota {
        let in_flight = match q.in_flight_range {
            Some([lo, hi]) if lo != hi => format!(
                "{lo}–{hi} of {} ({} changes)",
                q.max_in_flight, q.in_flight_changes
            ),
            Some([cap, _]) => format!("{cap} of {}", q.max_in_flight),
            None => format!("up to {}", q.max_in_flight),
        };
        let mode = serde_json::to_value(q.mode)
            .ok()
            .and_then(|v| v.as_str().map(|m| m.replace('_', " ")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {mode} | {} / {} | {} / {} | {} | {} ({}) | {in_flight} |",
            q.deployment,
            configured(q.configured_rpm),
            configured(q.configured_tpm),
            per_minute(q.learned_rpm),
            per_minute(q.learned_tpm),
            q.requests,
            q.rate_limited,
            pct(q.rate_limited_share),
        );
    }
    out.push('\n');
    for q in s.quota.iter().filter(|q| q.timeline.len() > 1) {
        let _ = writeln!(out, "Pace over the run, {}:\n", q.deployment);
        let _ = writeln!(
            out,
            "| seconds | sent rpm | sent tpm | 429s | allowed rpm / tpm at the end | in flight |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|---:|");
        for step in &q.timeline {
            let _ = writeln!(
                out,
                "| {:.0}–{:.0} | {:.0} | {:.0} | {} | {} / {} | {} |",
                step.from_s,
                step.to_s,
                step.sent_rpm,
                step.sent_tpm,
                step.rate_limited,
                per_minute(step.pace_rpm),
                per_minute(step.pace_tpm),
                step.in_flight_cap
            );
        }
        out.push('\n');
    }
}

/// Exact match and token F1.
fn text_section(out: &mut String, s: &Summary) {
    if let Some(text) = &s.text_metrics {
        let _ = writeln!(out, "## Text metrics\n");
        let _ = writeln!(
            out,
            "{} rows with a ground truth: exact match {}, token F1 {} (SQuAD normalisation).\n",
            text.n,
            pct(text.exact_match),
            pct(text.token_f1)
        );
    }
}

/// Judged metrics, one line each, then how far repeated judgments and two judges agree.
fn judged_section(out: &mut String, s: &Summary) {
    if s.judged.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Judged metrics\n");
    let _ = writeln!(
        out,
        "| metric | rows | mean (1–5) | 95% CI | 1 | 2 | 3 | 4 | 5 | pass rate | unjudged |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in &s.judged {
        let d = m.distribution;
        let ci = m
            .ci95
            .map(|[lo, hi]| format!("{lo:.2}–{hi:.2}"))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {ci} | {} | {} | {} | {} | {} | {} (≥ {}) | {} |",
            m.metric,
            m.n,
            m.mean,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            pct(m.pass_rate),
            m.threshold,
            m.unjudged
        );
    }
    out.push('\n');
    let alpha = |a: Option<f64>| a.map_or("undefined".to_string(), |a| format!("{a:.3}"));
    for m in &s.judged {
        if let Some(r) = &m.reliability {
            let _ = writeln!(
                out,
                "{}: {} judgments per row agree with Krippendorff's alpha (ordinal) {}; {} of {} rows disagree (mean spread {:.2}).\n",
                m.metric,
                r.judgments,
                alpha(r.krippendorff_alpha_ordinal),
                r.rows_disagreeing,
                r.rows,
                r.mean_spread
            );
        }
    }
    for pair in &s.judge_agreement {
        let _ = writeln!(
            out,
            "{} vs {}: Krippendorff's alpha (ordinal) {} over {} rows both judged; {} disagree.\n",
            pair.judges[0],
            pair.judges[1],
            alpha(pair.agreement.krippendorff_alpha_ordinal),
            pair.agreement.rows,
            pair.agreement.rows_disagreeing
        );
    }
}

/// The quality index and its parts.
fn quality_section(out: &mut String, s: &Summary) {
    if let Some(q) = &s.quality_index {
        let parts: Vec<String> = q
            .components
            .iter()
            .map(|c| format!("{} {:.3}", c.name, c.value))
            .collect();
        let _ = writeln!(
            out,
            "## Quality index\n\n**{:.3}** (0 to 1): the mean of {}.",
            q.value,
            parts.join(", ")
        );
    }
}

fn group_table(
    out: &mut String,
    title: &str,
    what: &str,
    groups: &[crate::score::accuracy::GroupAccuracy],
) {
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| {what} | rows | correct | wrong | invalid | accuracy | 95% CI |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for g in groups {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            g.name,
            g.tally.scored(),
            g.tally.correct,
            g.tally.wrong,
            g.tally.invalid(),
            pct(g.accuracy.value),
            ci(g.accuracy.ci95)
        );
    }
    out.push('\n');
}

impl Exporter<Comparison> for MarkdownExporter {
    fn serialize(&self, c: &Comparison) -> Result<Vec<u8>, ExportError> {
        let mut out = String::new();
        let _ = writeln!(out, "# evalr compare\n");
        let _ = writeln!(
            out,
            "Baseline (A): **{}** ({}).\n",
            c.baseline.name,
            describe(&c.baseline)
        );
        if c.intersect {
            let _ = writeln!(
                out,
                "> Restricted to the rows all runs share (`--intersect`); rows outside are left out of every figure below.\n"
            );
        }
        for pair in &c.pairs {
            pair_section(&mut out, c, pair);
        }
        let _ = writeln!(
            out,
            "_Intervals: paired bootstrap, {} resamples, seed {}, 95% percentile interval. p: exact McNemar test on the rows that changed._",
            c.bootstrap.resamples, c.bootstrap.seed
        );
        Ok(out.into_bytes())
    }
}

fn describe(label: &crate::score::compare::RunLabel) -> String {
    format!(
        "model {}, program {}",
        or_dash(label.model.as_deref()),
        or_dash(label.program.as_deref())
    )
}

fn pair_section(out: &mut String, c: &Comparison, p: &PairComparison) {
    let _ = writeln!(
        out,
        "## B: {} vs A: {}\n",
        p.candidate.name, c.baseline.name
    );
    let _ = writeln!(out, "B: {}.\n", describe(&p.candidate));
    if p.candidate.dataset_sha256 != c.baseline.dataset_sha256 {
        let _ = writeln!(
            out,
            "> The runs' dataset files differ (sha256); rows are paired by id.\n"
        );
    }
    if c.intersect && (p.rows.only_a > 0 || p.rows.only_b > 0) {
        let _ = writeln!(
            out,
            "> {} shared rows compared; left out: {} rows of A, {} rows of B.\n",
            p.rows.shared, p.rows.only_a, p.rows.only_b
        );
    }
    let _ = writeln!(out, "| | A | B | B − A |\n|---|---:|---:|---:|");
    if p.rows.compared == 0 {
        let _ = writeln!(
            out,
            "| accuracy | – | – | no row is scored in both runs (no correct_answer) |"
        );
    } else {
        accuracy_rows(out, p);
    }
    usage_rows(out, p);
    out.push('\n');
    pair_details(out, p);
}

fn accuracy_rows(out: &mut String, p: &PairComparison) {
    let _ = writeln!(
        out,
        "| accuracy ({} rows) | {} | {} | **{}** (95% CI {} … {}) |",
        p.rows.compared,
        pct(p.accuracy_a.value),
        pct(p.accuracy_b.value),
        pp(p.difference),
        pp(p.ci95[0]),
        pp(p.ci95[1])
    );
    let _ = writeln!(
        out,
        "| rows right only here | {} | {} | McNemar {} |",
        p.flipped.right_to_wrong.len(),
        p.flipped.wrong_to_right.len(),
        super::format_p(p.mcnemar_p)
    );
    let bars = &p.error_bars;
    let method = match bars.se_clustered {
        Some(_) => format!("SE clustered by subject ({} subjects)", bars.clusters),
        None => format!("SE {}", unclustered(bars.clusters)),
    };
    let _ = writeln!(
        out,
        "| smallest detectable difference | | | ± {:.1} pp ({:.0}% power, {method}) |",
        bars.minimum_detectable_effect * 100.0,
        bars.power * 100.0
    );
}

fn usage_rows(out: &mut String, p: &PairComparison) {
    let u = &p.usage;
    let _ = writeln!(
        out,
        "| tokens | {} | {} | {:+} |",
        u.tokens_a,
        u.tokens_b,
        u.tokens_b as i64 - u.tokens_a as i64
    );
    if let (Some(a), Some(b), Some(currency)) = (u.cost_a, u.cost_b, &u.currency) {
        let _ = writeln!(
            out,
            "| cost | {} | {} | {}{} |",
            money(a, currency),
            money(b, currency),
            if b >= a { "+" } else { "-" },
            money((b - a).abs(), currency)
        );
    } else {
        let _ = writeln!(out, "| cost | – | – | unknown price |");
    }
    if let (Some(a), Some(b)) = (&u.latency_a, &u.latency_b) {
        let _ = writeln!(
            out,
            "| latency p50 | {} | {} | {:+.0} ms |",
            ms(a.p50),
            ms(b.p50),
            b.p50 - a.p50
        );
        let _ = writeln!(
            out,
            "| latency p90 | {} | {} | {:+.0} ms |",
            ms(a.p90),
            ms(b.p90),
            b.p90 - a.p90
        );
    }
}

fn pair_details(out: &mut String, p: &PairComparison) {
    if let Some(gate) = &p.gate {
        let verdict = if gate.failed { "**FAILED**" } else { "passed" };
        let _ = writeln!(
            out,
            "Gate `--fail-if-worse {}`: {verdict} (fails when the upper bound of the 95% interval of B − A is below −{} pp).\n",
            gate.threshold_pp, gate.threshold_pp
        );
    }
    if !p.subjects.is_empty() {
        let _ = writeln!(out, "### By subject (largest change first)\n");
        let _ = writeln!(
            out,
            "| subject | rows | A | B | B − A |\n|---|---:|---:|---:|---:|"
        );
        for s in &p.subjects {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                s.subject,
                s.n,
                pct(s.accuracy_a),
                pct(s.accuracy_b),
                pp(s.difference)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "### Flipped rows\n");
    flipped_line(out, "right → wrong", &p.flipped.right_to_wrong);
    flipped_line(out, "wrong → right", &p.flipped.wrong_to_right);
    out.push('\n');
}

fn flipped_line(out: &mut String, label: &str, ids: &[String]) {
    let listed: Vec<String> = ids
        .iter()
        .take(MAX_FLIPPED_LISTED)
        .map(|id| format!("`{id}`"))
        .collect();
    let more = if ids.len() > MAX_FLIPPED_LISTED {
        format!(
            " and {} more (see the JSON)",
            ids.len() - MAX_FLIPPED_LISTED
        )
    } else {
        String::new()
    };
    let list = if listed.is_empty() {
        "none".to_string()
    } else {
        listed.join(", ")
    };
    let _ = writeln!(out, "- {label} ({}): {list}{more}", ids.len());
}
