//! `shardbar credential scram|wampcra|cryptosign`: make a principal's credential and print
//! it as a TOML inline table to paste into the config, plus what the client needs.
//!
//! It owns the subcommand's arguments, reading the password (stdin or an environment
//! variable), drawing salts, secrets and seeds from the OS, and the output format. The
//! cryptography is `proto::auth`'s, the same code the router logs clients in with; nothing
//! here touches the router's config or runs a router.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::limits;
use crate::proto::auth::scram::{self, Kdf};
use crate::proto::auth::{cryptosign, secret, wampcra};

/// `shardbar credential …`: which method's credential to make.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum CredentialCommand {
    /// A SCRAM principal (random salt, stored and server keys) from a password read on
    /// stdin or from --password-env
    Scram(ScramArgs),
    /// A WAMP-CRA principal: a random (or given) secret, salted with PBKDF2 unless --unsalted
    Wampcra(WampcraArgs),
    /// A cryptosign principal: a new Ed25519 key pair (or a client's --pubkey)
    Cryptosign(CryptosignArgs),
}

/// `shardbar credential scram`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ScramArgs {
    /// The principal's authid
    #[arg(long, value_parser = nonempty)]
    pub authid: String,
    /// Key derivation function: argon2id-13 (what Autobahn|Python clients can use) or pbkdf2
    #[arg(long, default_value = "argon2id-13", value_parser = kdf)]
    pub kdf: Kdf,
    /// KDF iterations [default: 4096 for argon2id-13, 100000 for pbkdf2]
    #[arg(long, value_name = "N", value_parser = scram_iterations)]
    pub iterations: Option<u32>,
    /// Argon2id memory in KiB [default: 512]
    #[arg(long, value_name = "KiB", value_parser = argon2_memory)]
    pub memory: Option<u32>,
    /// The principal's role
    #[arg(long, value_parser = nonempty)]
    pub role: Option<String>,
    /// Read the password from this environment variable instead of stdin
    #[arg(long, value_name = "VAR", value_parser = nonempty)]
    pub password_env: Option<String>,
}

/// `shardbar credential wampcra`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct WampcraArgs {
    /// The principal's authid
    #[arg(long, value_parser = nonempty)]
    pub authid: String,
    /// PBKDF2 iterations of the salted key
    #[arg(long, value_name = "N", default_value_t = limits::WAMPCRA_ITERATIONS_DEFAULT, value_parser = cra_iterations)]
    pub iterations: u32,
    /// Length of the salted key in bytes (before base64)
    #[arg(long, value_name = "N", default_value_t = limits::WAMPCRA_KEYLEN_DEFAULT_BYTES, value_parser = cra_keylen)]
    pub keylen: usize,
    /// No salt: the client signs with the secret itself
    #[arg(long, conflicts_with_all = ["iterations", "keylen"])]
    pub unsalted: bool,
    /// The principal's role
    #[arg(long, value_parser = nonempty)]
    pub role: Option<String>,
    /// Use the secret in this environment variable instead of a random one
    #[arg(long, value_name = "VAR", value_parser = nonempty)]
    pub secret_env: Option<String>,
}

/// `shardbar credential cryptosign`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct CryptosignArgs {
    /// The principal's authid
    #[arg(long, value_parser = nonempty)]
    pub authid: String,
    /// The principal's role
    #[arg(long, value_parser = nonempty)]
    pub role: Option<String>,
    /// The client's existing public key (64 hex characters) instead of a new key pair
    #[arg(long, value_name = "HEX", value_parser = pubkey)]
    pub pubkey: Option<[u8; 32]>,
}

fn nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(s.to_owned()) }
}

fn kdf(s: &str) -> Result<Kdf, String> {
    Kdf::parse(s).ok_or_else(|| "expected argon2id-13 or pbkdf2".into())
}

fn bounded<T: std::str::FromStr + PartialOrd + std::fmt::Display>(s: &str, min: T, max: T) -> Result<T, String> {
    let expected = || format!("expected a number from {min} to {max}");
    let n: T = s.parse().map_err(|_| expected())?;
    if n < min || n > max { Err(expected()) } else { Ok(n) }
}

fn scram_iterations(s: &str) -> Result<u32, String> {
    bounded(s, 1, limits::SCRAM_ITERATIONS_CEILING)
}

fn argon2_memory(s: &str) -> Result<u32, String> {
    bounded(s, limits::SCRAM_ARGON2_MEMORY_MIN_KIB, limits::SCRAM_ARGON2_MEMORY_CEILING_KIB)
}

fn cra_iterations(s: &str) -> Result<u32, String> {
    bounded(s, 1, limits::WAMPCRA_ITERATIONS_CEILING)
}

fn cra_keylen(s: &str) -> Result<usize, String> {
    bounded(s, 1, limits::WAMPCRA_KEYLEN_CEILING_BYTES)
}

fn pubkey(s: &str) -> Result<[u8; 32], String> {
    cryptosign::parse_pubkey(s).ok_or_else(|| "expected 64 hex characters of a valid Ed25519 public key".into())
}

/// Why the subcommand failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Bad input (an unset variable, an empty password): exit 2, like a usage error.
    Input(String),
    /// The system failed us (no randomness, stdin unreadable): exit 1.
    System(String),
}

/// What the subcommand reads from outside, so tests can supply it.
pub struct Inputs<'a> {
    /// An environment variable's value.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Standard input, for the SCRAM password.
    pub stdin: &'a mut dyn BufRead,
    /// Whether stdin is a terminal (then the password prompt goes to `err`).
    pub stdin_is_terminal: bool,
    /// Fills a buffer with secure random bytes.
    pub random: &'a mut dyn FnMut(&mut [u8]) -> Result<(), String>,
}

/// Runs the subcommand with the process's stdin, stdout, stderr, environment and OS
/// randomness; the exit code of `shardbar credential`.
pub fn main(command: &CredentialCommand) -> ExitCode {
    let stdin = std::io::stdin();
    let mut inputs = Inputs {
        env: &|name| std::env::var(name).ok(),
        stdin_is_terminal: stdin.is_terminal(),
        stdin: &mut stdin.lock(),
        random: &mut |buf| getrandom::fill(buf).map_err(|e| format!("no secure random bytes: {e}")),
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match run(command, &mut inputs, &mut out, &mut err) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            let _ = writeln!(err, "shardbar credential: {e}");
            ExitCode::from(2)
        }
        Err(Failure::System(e)) => {
            let _ = writeln!(err, "shardbar credential: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the subcommand: the principal line (and client notes, as TOML comments) to `out`,
/// prompts and warnings to `err`.
pub fn run(
    command: &CredentialCommand,
    inputs: &mut Inputs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let text = match command {
        CredentialCommand::Scram(args) => {
            let password = read_password(args, inputs, err)?;
            let mut salt = [0u8; limits::CREDENTIAL_SALT_GENERATED_BYTES];
            (inputs.random)(&mut salt).map_err(Failure::System)?;
            scram_principal(args, &password, &salt)?
        }
        CredentialCommand::Wampcra(args) => {
            let secret = match &args.secret_env {
                Some(var) => env_value(inputs, var, "secret")?,
                None => random_secret(inputs.random)?,
            };
            let mut salt = [0u8; limits::CREDENTIAL_SALT_GENERATED_BYTES];
            (inputs.random)(&mut salt).map_err(Failure::System)?;
            wampcra_principal(args, &secret, &secret::hex_encode(&salt))
        }
        CredentialCommand::Cryptosign(args) => {
            let Some(public) = args.pubkey else {
                let mut seed = [0u8; 32];
                (inputs.random)(&mut seed).map_err(Failure::System)?;
                let public = cryptosign::keypair_from_seed(&seed);
                write_out(out, &cryptosign_principal(args, &public, Some(&seed)))?;
                let warning = format!(
                    "shardbar credential: the private key printed above is {:?}'s identity: give it to that \
                     client only, and keep it out of the router's config, shell history and logs",
                    args.authid
                );
                return writeln!(err, "{warning}").map_err(|e| Failure::System(e.to_string()));
            };
            cryptosign_principal(args, &public, None)
        }
    };
    write_out(out, &text)
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| Failure::System(format!("stdout: {e}")))
}

fn env_value(inputs: &Inputs, var: &str, what: &str) -> Result<String, Failure> {
    match (inputs.env)(var) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Failure::Input(format!("the {what} in ${var} is empty"))),
        None => Err(Failure::Input(format!("${var} is not set (or not UTF-8)"))),
    }
}

/// The password from `--password-env`, or the first line of stdin without its line end.
fn read_password(args: &ScramArgs, inputs: &mut Inputs, err: &mut dyn Write) -> Result<String, Failure> {
    if let Some(var) = &args.password_env {
        return env_value(inputs, var, "password");
    }
    if inputs.stdin_is_terminal {
        let prompt = format!("password for {:?} (echoed; pipe it in or use --password-env to hide it): ", args.authid);
        let _ = write!(err, "{prompt}").and_then(|()| err.flush());
    }
    let mut line = String::new();
    inputs.stdin.read_line(&mut line).map_err(|e| Failure::System(format!("stdin: {e}")))?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        return Err(Failure::Input("no password on stdin (one line expected)".into()));
    }
    Ok(password.to_owned())
}

/// A random secret of letters and digits (safe in TOML, JSON and shells).
fn random_secret(random: &mut dyn FnMut(&mut [u8]) -> Result<(), String>) -> Result<String, Failure> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut secret = String::with_capacity(limits::WAMPCRA_SECRET_GENERATED_CHARS);
    let mut buf = [0u8; 64];
    while secret.len() < limits::WAMPCRA_SECRET_GENERATED_CHARS {
        random(&mut buf).map_err(Failure::System)?;
        // Bytes from 248 up would favour the first letters; skip them (rejection sampling).
        for b in buf.iter().filter(|&&b| usize::from(b) < 4 * ALPHABET.len()) {
            if secret.len() < limits::WAMPCRA_SECRET_GENERATED_CHARS {
                secret.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
            }
        }
    }
    Ok(secret)
}

/// The SCRAM principal line for `password` and `salt` (the KDF runs here); `Input` if the
/// parameters are out of range (`scram::check_params`).
pub fn scram_principal(args: &ScramArgs, password: &str, salt: &[u8]) -> Result<String, Failure> {
    let (iterations, memory) = match args.kdf {
        Kdf::Argon2id13 => (
            args.iterations.unwrap_or(limits::SCRAM_ARGON2_ITERATIONS_DEFAULT),
            Some(args.memory.unwrap_or(limits::SCRAM_ARGON2_MEMORY_DEFAULT_KIB)),
        ),
        Kdf::Pbkdf2 => (args.iterations.unwrap_or(limits::SCRAM_PBKDF2_ITERATIONS_DEFAULT), None),
    };
    scram::check_params(args.kdf, salt.len(), iterations, memory.unwrap_or(0)).map_err(Failure::Input)?;
    let (stored_key, server_key) = scram::derive_credential(password, salt, args.kdf, iterations, memory.unwrap_or(0));
    let mut fields = vec![("authid", toml_string(&args.authid)), ("kdf", toml_string(args.kdf.as_str()))];
    fields.push(("iterations", iterations.to_string()));
    if let Some(memory) = memory {
        fields.push(("memory", memory.to_string()));
    }
    fields.push(("salt", toml_string(&secret::hex_encode(salt))));
    fields.push(("stored_key", toml_string(&secret::hex_encode(&stored_key))));
    fields.push(("server_key", toml_string(&secret::hex_encode(&server_key))));
    let mut text = inline_table(fields, args.role.as_deref());
    if args.kdf == Kdf::Pbkdf2 {
        text.push_str("# note: Autobahn|Python's pbkdf2 SCRAM path is broken; its clients need argon2id-13\n");
    }
    Ok(text)
}

/// The WAMP-CRA principal line and the client notes for `secret` and `salt`.
pub fn wampcra_principal(args: &WampcraArgs, secret: &str, salt: &str) -> String {
    let mut fields = vec![("authid", toml_string(&args.authid)), ("secret", toml_string(secret))];
    if args.unsalted {
        let mut text = inline_table(fields, args.role.as_deref());
        text.push_str(&format!("# client: authid {}, secret {}\n", toml_string(&args.authid), toml_string(secret)));
        return text;
    }
    fields.push(("salt", toml_string(salt)));
    fields.push(("iterations", args.iterations.to_string()));
    fields.push(("keylen", args.keylen.to_string()));
    let key = wampcra::derive_key(secret, salt, args.iterations, args.keylen);
    // The derived key is base64 text, hence UTF-8.
    let key = String::from_utf8_lossy(&key);
    let mut text = inline_table(fields, args.role.as_deref());
    text.push_str(&format!(
        "# client: authid {}, secret {} (Autobahn derives the key from the CHALLENGE's salt, iterations, keylen)\n",
        toml_string(&args.authid),
        toml_string(secret)
    ));
    text.push_str(&format!("# derived key (the HMAC key, for a client that takes it pre-derived): {key}\n"));
    text
}

/// The cryptosign principal line for `public`, and with `seed` (its private key) a comment
/// line carrying that for the client.
pub fn cryptosign_principal(args: &CryptosignArgs, public: &[u8; 32], seed: Option<&[u8; 32]>) -> String {
    let keys = format!("[{}]", toml_string(&secret::hex_encode(public)));
    let fields = vec![("authid", toml_string(&args.authid)), ("authorized_keys", keys)];
    let mut text = inline_table(fields, args.role.as_deref());
    if let Some(seed) = seed {
        text.push_str(&format!("# private key (seed, hex) for the client's privkey: {}\n", secret::hex_encode(seed)));
    }
    text
}

/// `{ k = v, …, role = "…" }` and a line end.
fn inline_table(mut fields: Vec<(&str, String)>, role: Option<&str>) -> String {
    if let Some(role) = role {
        fields.push(("role", toml_string(role)));
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}\n", body.join(", "))
}

/// A TOML basic string: `"` and `\` escaped, control characters (DEL included) as escapes.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // From Autobahn|Python 26.10.2 (tests/interop/gen_auth_vectors.py, "small" exchange):
    // the password, salt and KDF parameters of a credential, and what `AuthScram` sent and
    // accepted when logging in with it.
    const PASSWORD: &str = "pässwörd";
    const SALT: &str = "c8c9cacbcccdcecfd0d1d2d3d4d5d6d7";
    const STORED_KEY: &str = "2684dcfe1a9250762cdc83140a0affd403dc63b7b4bf47fde09a4703c27db1a7";
    const AUTH_MESSAGE: &str = "n=Alice B,r=AAECAwQFBgcICQoLDA0ODw==,r=AAECAwQFBgcICQoLDA0ODw==ZGVmZ2hpamtsbW5vcHFycw==,\
        s=yMnKy8zNzs/Q0dLT1NXW1w==,i=3,c=,r=AAECAwQFBgcICQoLDA0ODw==ZGVmZ2hpamtsbW5vcHFycw==";
    const PROOF: &str = "yXnsmrzC0Xdq/x3Q/wbK3fm/kRDgeZ2vwTluVlJlzow=";
    const SERVER_SIGNATURE: &str = "mjT1PscUgUvI6s4jyj2IxMZ4qlxK376+YEvi+WhYR5Q=";

    fn scram_args() -> ScramArgs {
        ScramArgs {
            authid: "Al\u{ad}ice\u{a0}B".into(),
            kdf: Kdf::Argon2id13,
            iterations: Some(3),
            memory: Some(64),
            role: Some("frontend".into()),
            password_env: None,
        }
    }

    /// The inline table of a printed principal (its first line).
    fn table(text: &str) -> toml::Table {
        let line = text.lines().next().unwrap();
        toml::from_str::<toml::Table>(&format!("p = {line}")).unwrap()["p"].as_table().unwrap().clone()
    }

    fn field<'a>(t: &'a toml::Table, key: &str) -> &'a str {
        t[key].as_str().unwrap()
    }

    /// Runs the subcommand with `stdin`, `env` and random bytes from `random` (cycled).
    fn run_with(
        command: &CredentialCommand,
        stdin: &str,
        env: &[(&str, &str)],
        random: &[u8],
    ) -> (Result<(), Failure>, String, String) {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut next = random.iter().cycle();
        let mut inputs = Inputs {
            env: &|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            stdin: &mut stdin.as_bytes(),
            stdin_is_terminal: false,
            random: &mut |buf| {
                buf.iter_mut().for_each(|b| *b = *next.next().unwrap());
                Ok(())
            },
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run(command, &mut inputs, &mut out, &mut err);
        (result, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn scram_record_lets_autobahns_client_in() {
        // Goal: a record the tool prints, with the password it was made from, accepts the
        // proof Autobahn's client computes, and Autobahn accepts our server signature.
        // Method: feed the tool Autobahn's password and salt (as its random bytes) on
        // stdin, read the printed TOML back, and replay Autobahn's exchange against it.
        let salt = secret::hex_decode(SALT).unwrap();
        let command = CredentialCommand::Scram(scram_args());
        let (result, out, err) = run_with(&command, &format!("{PASSWORD}\r\nignored\n"), &[], &salt);
        assert_eq!((result, err.as_str()), (Ok(()), ""));
        let t = table(&out);
        assert_eq!(field(&t, "authid"), "Al\u{ad}ice\u{a0}B");
        assert_eq!((field(&t, "kdf"), field(&t, "salt"), field(&t, "role")), ("argon2id-13", SALT, "frontend"));
        assert_eq!((t["iterations"].as_integer(), t["memory"].as_integer()), (Some(3), Some(64)));
        assert_eq!(field(&t, "stored_key"), STORED_KEY);
        let stored = secret::hex_decode(field(&t, "stored_key")).unwrap();
        let server = secret::hex_decode(field(&t, "server_key")).unwrap();
        assert!(scram::verify_proof(&stored, AUTH_MESSAGE, PROOF));
        assert_eq!(scram::server_signature(&server, AUTH_MESSAGE), SERVER_SIGNATURE);
        assert_eq!(out, scram_principal(&scram_args(), PASSWORD, &salt).unwrap());
    }

    #[test]
    fn scram_password_sources_and_refusals() {
        let args = ScramArgs { password_env: Some("PW".into()), ..scram_args() };
        let command = CredentialCommand::Scram(args.clone());
        let (result, out, _) = run_with(&command, "", &[("PW", PASSWORD)], &secret::hex_decode(SALT).unwrap());
        assert_eq!(result, Ok(()));
        assert_eq!(field(&table(&out), "stored_key"), STORED_KEY);
        let (result, out, _) = run_with(&command, PASSWORD, &[], &[0]);
        assert_eq!(result, Err(Failure::Input("$PW is not set (or not UTF-8)".into())));
        assert_eq!(out, "");
        let (result, _, _) = run_with(&command, "", &[("PW", "")], &[0]);
        assert!(matches!(result, Err(Failure::Input(_))));
        let command = CredentialCommand::Scram(scram_args());
        for stdin in ["", "\n", "\r\n"] {
            let (result, _, _) = run_with(&command, stdin, &[], &[0]);
            assert!(matches!(result, Err(Failure::Input(_))), "{stdin:?}");
        }
        let too_little = ScramArgs { memory: Some(1), ..scram_args() };
        assert!(matches!(scram_principal(&too_little, "pw", &[0; 16]), Err(Failure::Input(_))));
        // pbkdf2: no memory field, and a note that Autobahn|Python cannot use it.
        let pbkdf2 = ScramArgs { kdf: Kdf::Pbkdf2, iterations: Some(2), memory: None, ..scram_args() };
        let text = scram_principal(&pbkdf2, "pw", &[7; 16]).unwrap();
        let t = table(&text);
        assert_eq!((field(&t, "kdf"), t.get("memory")), ("pbkdf2", None));
        let (stored, _) = scram::derive_credential("pw", &[7; 16], Kdf::Pbkdf2, 2, 0);
        assert_eq!(field(&t, "stored_key"), secret::hex_encode(&stored));
        assert!(text.lines().nth(1).unwrap().starts_with("# note: "));
    }

    #[test]
    fn wampcra_principal_and_client_key() {
        // The salted key is Autobahn's `derive_key("s3cr3t", "salt123", 1000, 32)`.
        let args = WampcraArgs {
            authid: "svc".into(),
            iterations: 1000,
            keylen: 32,
            unsalted: false,
            role: Some("backend".into()),
            secret_env: Some("CRA".into()),
        };
        let text = wampcra_principal(&args, "s3cr3t", "salt123");
        let t = table(&text);
        assert_eq!((field(&t, "authid"), field(&t, "secret"), field(&t, "salt")), ("svc", "s3cr3t", "salt123"));
        assert_eq!((t["iterations"].as_integer(), t["keylen"].as_integer()), (Some(1000), Some(32)));
        assert!(text.ends_with(": TSMRO/U+jxq60liTV2uxuO6RgKFN022eOOelapaApxk=\n"), "{text}");
        // Through run(): the given secret and a random hex salt.
        let (result, out, _) = run_with(&CredentialCommand::Wampcra(args.clone()), "", &[("CRA", "s3cr3t")], &[0xab]);
        assert_eq!(result, Ok(()));
        assert_eq!(field(&table(&out), "salt"), "ab".repeat(limits::CREDENTIAL_SALT_GENERATED_BYTES));
        // A random secret: letters and digits only, bytes from 248 up skipped.
        let random = CredentialCommand::Wampcra(WampcraArgs { secret_env: None, unsalted: true, ..args });
        let (result, out, _) = run_with(&random, "", &[], &[255, 0, 61, 62, 247, 248]);
        assert_eq!(result, Ok(()));
        let t = table(&out);
        assert_eq!(t.len(), 3, "unsalted: authid, secret, role");
        let secret = field(&t, "secret");
        assert_eq!(secret.len(), limits::WAMPCRA_SECRET_GENERATED_CHARS);
        assert_eq!(&secret[..4], "A9A9", "0 -> A, 61 -> 9, 62 and 247 wrap");
    }

    #[test]
    fn cryptosign_key_pair_and_given_pubkey() {
        // The seed and public key of Autobahn's cryptosign vector.
        let seed = secret::hex_decode("963f85692dcf26b5c505bcec4a579b035a07d51c1370a0bdb5215bda30531c5a").unwrap();
        let public = "4f0952b990a7a563b00ace8b684623acb3d8688ab87ea4bd0cbf722eb515d817";
        let args = CryptosignArgs { authid: "dev1".into(), role: None, pubkey: None };
        let (result, out, err) = run_with(&CredentialCommand::Cryptosign(args.clone()), "", &[], &seed);
        assert_eq!(result, Ok(()));
        let t = table(&out);
        assert_eq!(t["authorized_keys"].as_array().unwrap()[0].as_str(), Some(public));
        assert!(out.lines().nth(1).unwrap().ends_with(&secret::hex_encode(&seed)));
        assert!(err.contains("give it to that client only"), "{err}");
        let given = CryptosignArgs { pubkey: cryptosign::parse_pubkey(public), ..args };
        let (result, out, err) = run_with(&CredentialCommand::Cryptosign(given), "", &[], &[]);
        assert_eq!((result, out.lines().count(), err.as_str()), (Ok(()), 1, ""));
        assert_eq!(table(&out)["authorized_keys"].as_array().unwrap()[0].as_str(), Some(public));
    }

    #[test]
    fn toml_strings_round_trip() {
        for s in ["plain", "qu\"ote\\back", "new\nline\ttab\r", "\u{0}\u{1f}\u{7f}\u{85}", "é€😀\u{2028}"] {
            let parsed: toml::Table = toml::from_str(&format!("k = {}", toml_string(s))).unwrap();
            assert_eq!(parsed["k"].as_str(), Some(s));
        }
    }
}
