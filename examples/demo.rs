//! battlement's demo: the same service with and without the resilience
//! stack, side by side, against an upstream that fails on a seeded
//! schedule. Starts everything on 127.0.0.1, shows the phases and the
//! registry live, prints a summary, and exits.
//!
//! `cargo run --release -p battlement-examples --bin demo -- --help`

use battlement_examples::demo::{Cli, run};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = cli.config();
    match run(config.clone()).await {
        Ok(summary) => {
            println!("\n{summary}");
            if let Some(path) = &config.json {
                println!("summary as JSON: {}", path.display());
            }
            if let Some(path) = &config.plot {
                println!("picture: {}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
