//! The `realnet` command line: parses arguments, calls the library, prints.
use clap::Parser;
use realnet::error::{exit, exit_code_of};

mod cli;

fn main() {
    realnet::alloc::keep_freed_memory();
    let args = cli::Cli::parse();
    cli::init_logging(args.global.verbose);
    let code = match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_code_of(&err)
        }
    };
    if code != exit::OK {
        std::process::exit(code);
    }
}
