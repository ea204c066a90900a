//! `idaas-jwt-filter`: checks a plugin configuration, or explains the filter's verdict on one
//! token, with the same core code the Wasm filter runs.
//!
//! The tool is native only: it reads files, the process environment and the network through
//! the standard library and `ureq`, none of which the proxy-wasm sandbox offers. Cargo builds
//! every target of the package for `--target wasm32-wasip1` as well. On wasm32 this file
//! therefore compiles to a stub `main` that exits with an error, so the filter's own build
//! needs no extra flags.

/// Writes a line to standard output like `println!`, but a reader that went away (`| head`)
/// ends the tool quietly instead of making it panic.
#[cfg(not(target_arch = "wasm32"))]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard output like `print!`, with the same handling as `outln!`.
#[cfg(not(target_arch = "wasm32"))]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Writes a line to standard error like `eprintln!`, but a closed standard error is ignored
/// instead of making the tool panic, so the exit status stays the one the command chose.
#[cfg(not(target_arch = "wasm32"))]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard error like `eprint!`, with the same handling as `errln!`.
#[cfg(not(target_arch = "wasm32"))]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod check_config;
#[cfg(not(target_arch = "wasm32"))]
mod explain;
#[cfg(not(target_arch = "wasm32"))]
mod keys;
#[cfg(not(target_arch = "wasm32"))]
mod output;
#[cfg(not(target_arch = "wasm32"))]
mod replay;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    native::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {
    eprintln!("idaas-jwt-filter: the command-line tool runs natively only; build it without --target wasm32-wasip1");
    std::process::exit(2);
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::process::ExitCode;

    use crate::args::{self, Command};
    use crate::{check_config, explain};

    /// Exit status for a usage error, an input the tool cannot use, or output it cannot write.
    pub const EXIT_USAGE: u8 = 2;

    /// Error that stops a command before it reaches a verdict.
    #[derive(Debug)]
    pub enum Failure {
        /// The command line is wrong; the usage text follows the message.
        Usage(String),
        /// A file, the standard input or a URL could not be read or used.
        Input(String),
    }

    pub fn main() -> ExitCode {
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let result = match args::parse(&arguments) {
            Ok(Command::Help) => {
                out!("{}", args::USAGE);
                Ok(ExitCode::SUCCESS)
            }
            Ok(Command::CheckConfig(options)) => check_config::run(&options),
            Ok(Command::Explain(options)) => explain::run(&options),
            Err(failure) => Err(failure),
        };
        match result {
            Ok(code) => code,
            Err(Failure::Usage(message)) => {
                errln!("idaas-jwt-filter: {message}\n");
                err!("{}", args::USAGE);
                ExitCode::from(EXIT_USAGE)
            }
            Err(Failure::Input(message)) => {
                errln!("idaas-jwt-filter: {message}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
use native::Failure;
