use clap::Parser;

fn main() {
    std::process::exit(repro::run(repro::Cli::parse()));
}
