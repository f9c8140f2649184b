use clap::Parser;

fn main() {
    let cli = repro::Cli::parse();
    std::process::exit(repro::run(cli));
}
