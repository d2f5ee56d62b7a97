//! Exit codes: the one policy, in one place (like ripgrep's). A verdict never shares a code
//! with an error, so a CI job can tell "the candidate is worse" from "the job broke".
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | success (a broken pipe on standard output, as in `evalr programs list \| head -1`, is a quiet success) |
//! | 1 | error while working: I/O, network, a model that fails every row, a report that cannot be written |
//! | 2 | usage or configuration error: bad flag, missing setting, unreadable input; nothing was sent to a model |
//! | 3 | negative verdict: `compare --fail-if-worse` found a regression, or a run stopped on `--max-errors` |
//! | 4 | incomplete: a run stopped on `--max-cost`; resume it with `evalr run --resume` |
//! | 130 | interrupted by Ctrl-C; resume it with `evalr run --resume` |
//!
//! The same table is in `--help` ([`AFTER_HELP`]) and docs/exit-codes.md.

use std::process::ExitCode;

use crate::results::RunStatus;

/// What a command's ending means, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Error,
    Usage,
    NegativeVerdict,
    Incomplete,
    Interrupted,
}

/// The table above, for `--help`.
pub const AFTER_HELP: &str = "\
Exit codes:
  0    success (also when standard output is closed early, e.g. `| head -1`)
  1    error while working: I/O, network, a model that fails every row
  2    usage or configuration error; nothing was sent to a model
  3    negative verdict: `compare --fail-if-worse` found a regression, or a run
       stopped on --max-errors
  4    incomplete: a run stopped on --max-cost (resume with `evalr run --resume`)
  130  interrupted by Ctrl-C (resume with `evalr run --resume`)";

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::NegativeVerdict => 3,
            Exit::Incomplete => 4,
            Exit::Interrupted => 130,
        }
    }

    /// How a run that ended with `status` exits.
    pub fn of_run(status: RunStatus) -> Exit {
        match status {
            RunStatus::Finished | RunStatus::Running => Exit::Success,
            RunStatus::StoppedMaxErrors => Exit::NegativeVerdict,
            RunStatus::StoppedMaxCost => Exit::Incomplete,
            RunStatus::Interrupted => Exit::Interrupted,
            RunStatus::Failed => Exit::Error,
        }
    }

    /// How a command that failed with `error` exits: the first cause in the chain that says
    /// whether the user must fix input or configuration decides; anything else is an error.
    pub fn of_error(error: &anyhow::Error) -> Exit {
        if is_broken_pipe(error) {
            return Exit::Success;
        }
        error
            .chain()
            .find_map(classify)
            .map_or(
                Exit::Error,
                |usage| {
                    if usage { Exit::Usage } else { Exit::Error }
                },
            )
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Whether the error is standard output closed under us (`| head`): a normal end.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `Some(true)`: the user must fix input or configuration (exit 2); `Some(false)`: an error
/// while working (exit 1); `None`: this cause does not say, look further down the chain.
fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<bool> {
    use crate::azureml::merge::MergeError;
    use crate::azureml::mlflow::MlflowError;
    use crate::results::ResultsError;
    use crate::run::RunError;
    use crate::score::ScoreError;
    if cause.is::<super::UsageError>()
        || cause.is::<crate::dataset::RowError>()
        || cause.is::<crate::config::ConfigError>()
        || cause.is::<crate::program::ProgramError>()
        || cause.is::<crate::backend::identity::IdentityError>()
    {
        return Some(true);
    }
    if let Some(e) = cause.downcast_ref::<crate::dataset::DatasetError>() {
        return Some(e.is_usage());
    }
    if let Some(e) = cause.downcast_ref::<RunError>() {
        return Some(e.is_usage());
    }
    if let Some(e) = cause.downcast_ref::<MergeError>() {
        return Some(!matches!(e, MergeError::Results(ResultsError::Io { .. })));
    }
    if let Some(e) = cause.downcast_ref::<MlflowError>() {
        return Some(matches!(
            e,
            MlflowError::File { .. } | MlflowError::UnsupportedUri(_)
        ));
    }
    // Reading result folders: a missing or malformed folder is the user's input.
    if cause.is::<ResultsError>() {
        return Some(true);
    }
    if let Some(e) = cause.downcast_ref::<ScoreError>() {
        return Some(!matches!(e, ScoreError::Write { .. }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_never_share_a_code_with_errors() {
        let verdicts = [Exit::NegativeVerdict, Exit::Incomplete, Exit::Interrupted];
        for verdict in verdicts {
            assert!(
                ![Exit::Error, Exit::Usage, Exit::Success]
                    .iter()
                    .any(|e| e.code() == verdict.code())
            );
        }
        assert_eq!(Exit::of_run(RunStatus::Failed), Exit::Error);
        assert_eq!(
            Exit::of_run(RunStatus::StoppedMaxErrors),
            Exit::NegativeVerdict
        );
    }

    #[test]
    fn the_help_table_and_the_codes_agree() {
        for exit in [
            Exit::Success,
            Exit::Error,
            Exit::Usage,
            Exit::NegativeVerdict,
            Exit::Incomplete,
            Exit::Interrupted,
        ] {
            let code = format!("\n  {:<4} ", exit.code());
            assert!(
                AFTER_HELP.contains(&code),
                "{code:?} missing from AFTER_HELP"
            );
        }
    }

    #[test]
    fn a_broken_pipe_is_a_quiet_success() {
        let error = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the program list");
        assert_eq!(Exit::of_error(&error), Exit::Success);
    }
}
