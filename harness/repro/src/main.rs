use clap::Parser;

fn main() {
    std::process::exit(repro::main(repro::Cli::parse()));
}
