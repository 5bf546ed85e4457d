use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match vecwal::cli::config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = vecwal::cli::Cli::parse_from(args);
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("VECWAL_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        vecwal::cli::LogFormat::Json => logs.json().init(),
        vecwal::cli::LogFormat::Text => logs.init(),
    }
    match vecwal::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
