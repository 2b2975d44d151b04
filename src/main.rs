fn main() -> std::process::ExitCode {
    efen::cli::main()
}
