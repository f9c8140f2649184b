//! The command line: parse, dispatch one subcommand, turn its result into
//! the exit code. One file per subcommand; their arguments are in [`args`].

pub(crate) mod args;
mod args_run;
mod args_vm;
mod bisect;
mod check;
mod exec;
mod fetch;
mod image;
mod kernels;
mod matrix;
mod report;
mod requests;
mod resume;
mod run;
mod watch;

use crate::error;
use crate::interrupt;
use args::{Cli, Command, ImageCommand};
use repro_proto::exit_codes as codes;

/// The longest single argument repro takes: PATH_MAX. A longer one is no
/// path, name or number, and clap would echo it whole in its error.
const MAX_ARG_BYTES: usize = 4096;

/// Parse `argv` and run it; returns the process exit code. Arguments over
/// [`MAX_ARG_BYTES`] are refused (exit 2) before clap sees them.
pub fn from_argv(argv: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser;
    let argv: Vec<std::ffi::OsString> = argv.into_iter().collect();
    if let Some((i, a)) = argv.iter().enumerate().find(|(_, a)| a.len() > MAX_ARG_BYTES) {
        crate::text::err(&format!(
            "error: argument {i} is {} bytes long ({}): no option of repro takes more than {MAX_ARG_BYTES}; check the command line\n",
            a.len(),
            crate::text::clip(&a.to_string_lossy(), 40)
        ));
        return codes::USAGE;
    }
    match Cli::try_parse_from(argv) {
        Ok(cli) => main(cli),
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}

/// Run a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> i32 {
    init_logging(cli.verbose, cli.quiet);
    interrupt::install();
    // A panic is a bug in repro, never a verdict: exit 101 would read as
    // "bad" to git bisect run. Report it and exit 128, which stops a bisection.
    let (quiet, command) = (cli.quiet, cli.command);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(command, quiet))) {
        Ok(code) => code,
        Err(_) => {
            crate::text::errln(
                "error: repro hit an internal error (the panic message is above) and stopped; this is a bug in repro, \
                 not a verdict on the kernel: please report it with the command line",
            );
            codes::CANNOT_RUN
        }
    }
}

fn dispatch(command: Command, quiet: bool) -> i32 {
    let result = match command {
        Command::Run(args) => run::run(&args, quiet),
        Command::Resume(args) => resume::run(&args, quiet),
        Command::Check(args) => check::check(&args, quiet),
        Command::Kernels(args) => kernels::kernels(&args),
        Command::Report(args) => report::report(&args),
        Command::Matrix(args) => matrix::matrix(&args, quiet),
        Command::Bisect(args) => bisect::bisect(&args, quiet),
        Command::Watch(args) => watch::watch(&args),
        Command::Exec(args) => exec::exec(&args),
        Command::Fetch(args) => fetch::fetch(&args),
        Command::Image(ImageCommand::Build(args)) => image::image_build(&args),
        Command::Image(ImageCommand::Key(args)) => image::image_key(&args),
    };
    match result {
        // The reader of stdout went away: nothing to say, and nobody to say it to.
        _ if interrupt::by_closed_stdout() => codes::STDOUT_CLOSED,
        // Whatever a step made of being interrupted (apt-get killed by the
        // terminal's Ctrl-C reads as a failed fetch), the command was,
        // unless it did what the signal asked (Kind::answers_a_signal).
        Err(e) if interrupt::requested() && !error::kind_of(&e).is_some_and(error::Kind::answers_a_signal) => {
            crate::text::err(&format!("error: interrupted: {}\n", error::render(&e)));
            codes::INTERRUPTED
        }
        Ok(code) => code,
        Err(e) => {
            crate::text::err(&format!("error: {}\n", error::render(&e)));
            error::exit_code_of(&e)
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("repro={level}")));
    // Colour only for a person at a terminal, and never under NO_COLOR (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::text::LogWriter)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}
