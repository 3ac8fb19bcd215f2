//! The `fusionizer` binary: parses nothing itself, hands the arguments to the library and turns
//! the outcome into an exit code.

fn main() -> std::process::ExitCode {
    fusionizer::main_with_args(std::env::args_os())
}
