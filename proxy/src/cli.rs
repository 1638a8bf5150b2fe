//! clap subcommands: serve, demo-server, token, policy, audit.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
