fn main() -> std::process::ExitCode {
    eipsim::cli::main()
}
