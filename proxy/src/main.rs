//! The `toolgate` binary: see [`toolgate::cli`].
fn main() -> std::process::ExitCode {
    toolgate::cli::main()
}
