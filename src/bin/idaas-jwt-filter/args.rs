//! Command-line parsing, by hand: the filter's crate keeps its dependency list short.

use crate::Failure;

pub const USAGE: &str = "\
Usage:
  idaas-jwt-filter check-config FILE
  idaas-jwt-filter explain --config FILE [--jwks FILE | --jwks-url URL] [request options] TOKEN
  idaas-jwt-filter --help

check-config FILE
  Parses and validates the plugin configuration in FILE (JSON, with or without Higress
  _rules_; - reads standard input) as the filter does when Envoy configures it, with
  ${NAME} in upstream_authorization taken from this process's environment. Prints the
  error with its field path, or a summary of providers, rules and scopes. Unknown fields
  are warnings. The value of upstream_authorization is never printed.
  Exit status: 0 valid, 1 invalid, 2 usage error or unreadable file.

explain [options] TOKEN
  Places one request under the configuration and route rule the filter would pick, runs
  the filter's checks on TOKEN and prints each step, then the verdict: the reason code,
  HTTP status and WWW-Authenticate header the filter sends. TOKEN is a bare token,
  \"Bearer <token>\" or \"Authorization: Bearer <token>\"; - reads it from standard input;
  an empty TOKEN (\"\") is a request without an Authorization header. Put -- before a
  TOKEN that starts with -.

  --config FILE        plugin configuration JSON (required)
  --jwks FILE          JWKS document used as the keys of every provider that has
                       remote_jwks or discovery (providers with only local_jwks keep
                       their inline keys)
  --jwks-url URL       the same, fetched once with GET over http:// or https://; as in the
                       filter, only a 200 response of at most 262144 bytes is used and
                       redirects are not followed (timeout 10 seconds)
                       Without --jwks or --jwks-url, remote providers use their local_jwks
                       bootstrap keys, or have no keys (jwks_unavailable).
  --path PATH          request :path, query included (default /)
  --method METHOD      request :method (default GET)
  --host HOST          request :authority, port allowed (default localhost); it is also the
                       realm of WWW-Authenticate
  --route-name NAME    Envoy route name, matched by Higress _match_route_ and
                       _match_route_prefix_ (default: none, which matches no such rule)
  --cluster-name NAME  upstream cluster name, matched by Higress _match_service_
                       (default: none)
  --header 'NAME: VALUE'
                       another request header, repeatable; Origin and
                       Access-Control-Request-Method make an OPTIONS request a CORS
                       preflight, and Authorization values are added after TOKEN
  --now SECONDS        current time in whole seconds since the Unix epoch (default: the
                       system clock)
  Exit status: 0 the filter lets the request through, 1 it rejects it, 2 usage error or an
  unusable input (configuration, JWKS, token file or JWKS fetch).
";

/// The command the arguments select.
#[derive(Debug)]
pub enum Command {
    Help,
    CheckConfig(CheckConfigOptions),
    Explain(Box<ExplainOptions>),
}

#[derive(Debug)]
pub struct CheckConfigOptions {
    /// Path of the configuration file; `-` is standard input.
    pub config: String,
}

/// Source of the keys `explain` uses in place of the configured remote key sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksOverride {
    File(String),
    Url(String),
}

#[derive(Debug)]
pub struct ExplainOptions {
    pub config: String,
    pub jwks: Option<JwksOverride>,
    pub path: String,
    pub method: String,
    pub host: String,
    pub route_name: Option<String>,
    pub cluster_name: Option<String>,
    /// Extra request headers as (name, value); names keep their case.
    pub headers: Vec<(String, String)>,
    /// Seconds since the Unix epoch; `None` reads the system clock.
    pub now_seconds: Option<i64>,
    /// The TOKEN argument; `-` is standard input.
    pub token: String,
}

/// Parses the arguments after the program name.
pub fn parse(arguments: &[String]) -> Result<Command, Failure> {
    if arguments.iter().any(|argument| argument == "--help" || argument == "-h") {
        return Ok(Command::Help);
    }
    let Some((command, rest)) = arguments.split_first() else {
        return Err(Failure::Usage("a command is required: check-config or explain".to_owned()));
    };
    match command.as_str() {
        "check-config" => parse_check_config(rest),
        "explain" => parse_explain(rest),
        "help" => Ok(Command::Help),
        other => Err(Failure::Usage(format!("unknown command {other:?}; use check-config or explain"))),
    }
}

fn parse_check_config(arguments: &[String]) -> Result<Command, Failure> {
    let split = split_arguments(arguments)?;
    if let Some((name, _)) = split.options.first() {
        return Err(Failure::Usage(format!("check-config takes no options, got {name}")));
    }
    match split.positional.as_slice() {
        [config] => Ok(Command::CheckConfig(CheckConfigOptions { config: config.clone() })),
        [] => Err(Failure::Usage("check-config needs the configuration FILE".to_owned())),
        _ => Err(Failure::Usage("check-config takes exactly one FILE".to_owned())),
    }
}

fn parse_explain(arguments: &[String]) -> Result<Command, Failure> {
    let split = split_arguments(arguments)?;
    let mut options = ExplainOptions {
        config: String::new(),
        jwks: None,
        path: "/".to_owned(),
        method: "GET".to_owned(),
        host: "localhost".to_owned(),
        route_name: None,
        cluster_name: None,
        headers: Vec::new(),
        now_seconds: None,
        token: String::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut config = None;
    for (name, value) in &split.options {
        if name != "--header" {
            if seen.contains(&name.as_str()) {
                return Err(Failure::Usage(format!("{name} is given twice")));
            }
            seen.push(name);
        }
        match name.as_str() {
            "--config" => config = Some(value.clone()),
            "--jwks" | "--jwks-url" => {
                if options.jwks.is_some() {
                    return Err(Failure::Usage("give either --jwks or --jwks-url, not both".to_owned()));
                }
                options.jwks = Some(if name == "--jwks" {
                    JwksOverride::File(value.clone())
                } else {
                    JwksOverride::Url(value.clone())
                });
            }
            "--path" => options.path = value.clone(),
            "--method" => options.method = value.clone(),
            "--host" => options.host = value.clone(),
            "--route-name" => options.route_name = Some(value.clone()),
            "--cluster-name" => options.cluster_name = Some(value.clone()),
            "--header" => options.headers.push(parse_header(value)?),
            "--now" => options.now_seconds = Some(parse_now(value)?),
            other => return Err(Failure::Usage(format!("unknown option {other} for explain"))),
        }
    }
    options.config = config.ok_or_else(|| Failure::Usage("explain needs --config FILE".to_owned()))?;
    options.token = match split.positional.as_slice() {
        [token] => token.clone(),
        [] => return Err(Failure::Usage("explain needs a TOKEN (\"\" for none, - to read standard input)".to_owned())),
        _ => return Err(Failure::Usage("explain takes exactly one TOKEN".to_owned())),
    };
    Ok(Command::Explain(Box::new(options)))
}

/// Options with their values, and positional arguments, in order.
struct SplitArguments {
    options: Vec<(String, String)>,
    positional: Vec<String>,
}

/// Separates `--name value` and `--name=value` options from positional arguments. `-` is
/// positional, and everything after `--` is positional.
fn split_arguments(arguments: &[String]) -> Result<SplitArguments, Failure> {
    let mut split = SplitArguments {
        options: Vec::new(),
        positional: Vec::new(),
    };
    let mut remaining = arguments.iter();
    while let Some(argument) = remaining.next() {
        if argument == "--" {
            split.positional.extend(remaining.cloned());
            break;
        }
        if argument == "-" || !argument.starts_with('-') {
            split.positional.push(argument.clone());
            continue;
        }
        if !argument.starts_with("--") {
            return Err(Failure::Usage(format!("unknown option {argument}; options start with --")));
        }
        let (name, value) = match argument.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => {
                let value = remaining
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("{argument} needs a value")))?;
                (argument.clone(), value.clone())
            }
        };
        split.options.push((name, value));
    }
    Ok(split)
}

fn parse_header(value: &str) -> Result<(String, String), Failure> {
    let (name, header_value) = value
        .split_once(':')
        .ok_or_else(|| Failure::Usage(format!("--header {value:?} must have the form 'NAME: VALUE'")))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(Failure::Usage(format!("--header {value:?} has no valid header name before the colon")));
    }
    Ok((name.to_owned(), header_value.trim().to_owned()))
}

fn parse_now(value: &str) -> Result<i64, Failure> {
    match value.parse::<i64>() {
        Ok(seconds) if seconds >= 0 => Ok(seconds),
        _ => Err(Failure::Usage(format!(
            "--now {value:?} must be a whole number of seconds since the Unix epoch, such as 1767225600"
        ))),
    }
}
