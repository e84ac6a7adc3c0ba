fn main() -> std::process::ExitCode {
    sipnat::cli::main()
}
