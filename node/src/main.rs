//! The `samizdat` binary: parses the command line and calls the library.

fn main() -> std::process::ExitCode {
    samizdat_node::cli::main()
}
