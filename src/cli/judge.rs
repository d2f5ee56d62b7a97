//! `evalr judge`: the flags, and the figures printed when the judges are done.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::run::RunFlags;
use crate::run::judge::{JudgeRequest, MAX_REPEATS};
use crate::say;

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The result folder of the run to judge.
    pub run: PathBuf,
    /// Metrics to judge (comma-separated): built-in groundedness, coherence, fluency,
    /// relevance, retrieval, similarity, or the path of any judge .prompty file (e.g. an
    /// azure-ai-evaluation judge in your installed package). Groundedness and retrieval need
    /// a `context` field in the rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "coherence,fluency,relevance,similarity"
    )]
    pub metric: Vec<String>,
    /// The judge model (same forms as `evalr run --model`).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Judge metrics already judged again with another judge (model or program), kept apart
    /// in judge/<metric>@NAME; the summary reports the two judges' agreement.
    #[arg(long, value_name = "NAME")]
    pub judge_name: Option<String>,
    /// Ask each judgment K times (each repeat is its own cached request); the summary reports
    /// the repeats' agreement (Krippendorff's alpha, ordinal) and the per-row spread.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_REPEATS)))]
    pub judge_repeats: u32,
    /// A score at or above this passes (`<metric>_result`, pass rate), as azure-ai-evaluation's
    /// `threshold`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub threshold: u8,
    /// The judge runs' settings, as `evalr run` takes them (judge runs are runs).
    #[command(flatten)]
    pub flags: RunFlags,
}

pub fn execute_judge(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let options = args
        .flags
        .options(String::new(), String::new(), args.judge_model.clone());
    let request = JudgeRequest {
        run_folder: args.run.clone(),
        metrics: args.metric.clone(),
        threshold: args.threshold,
        repeats: args.judge_repeats,
        label: args.judge_name.clone(),
        options,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(crate::run::judge::judge(request, !args.flags.quiet))?;
    let summary = crate::score::score_folder(&args.run)?;
    for metric in &summary.judged {
        let ci = metric
            .ci95
            .map(|[lo, hi]| format!(" (95% CI {lo:.2}-{hi:.2})"))
            .unwrap_or_default();
        let unparsed = if metric.unjudged > 0 {
            format!(", {} without a score", metric.unjudged)
        } else {
            String::new()
        };
        say!(
            "{}: mean {:.2}{ci} over {} rows, pass rate {:.1}% (score >= {}){unparsed}",
            metric.metric,
            metric.mean,
            metric.n,
            metric.pass_rate * 100.0,
            metric.threshold,
        )?;
        if let Some(reliability) = &metric.reliability {
            say!(
                "  {} repeats: Krippendorff's alpha (ordinal) {}, {} of {} rows disagree, mean spread {:.2}",
                reliability.judgments,
                reliability
                    .krippendorff_alpha_ordinal
                    .map_or("undefined (one score throughout)".to_string(), |a| format!(
                        "{a:.3}"
                    )),
                reliability.rows_disagreeing,
                reliability.rows,
                reliability.mean_spread,
            )?;
        }
    }
    for pair in &summary.judge_agreement {
        say!(
            "{} vs {}: Krippendorff's alpha (ordinal) {} over {} rows, {} disagree",
            pair.judges[0],
            pair.judges[1],
            pair.agreement
                .krippendorff_alpha_ordinal
                .map_or("undefined".to_string(), |a| format!("{a:.3}")),
            pair.agreement.rows,
            pair.agreement.rows_disagreeing,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
