//! `evalr`: parse the command line, hand over to the library, turn errors into exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <evalr::cli::Cli as clap::Parser>::parse();
    match evalr::cli::execute(cli) {
        Ok(code) => code,
        // Standard output closed early (`| head -1`) is a normal end, with nothing to say.
        Err(error) if evalr::cli::exit::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", evalr::cli::describe_error(&error));
            evalr::cli::exit_code_for(&error)
        }
    }
}
