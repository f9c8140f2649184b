fn main() {
    std::process::exit(repro::from_argv(std::env::args_os()));
}
