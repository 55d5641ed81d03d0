//! `shardbar credential …` end to end: the real binary, its stdin, environment, stdout,
//! stderr and exit codes; what it prints is read back as TOML and checked with the same
//! `proto::auth` functions the router logs clients in with. (The math itself is checked
//! against Autobahn's vectors in the unit tests of `src/proto/auth/` and `src/credential.rs`.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

use shardbar::proto::auth::scram::{self, Kdf};
use shardbar::proto::auth::{cryptosign, secret, wampcra};

const SHARDBAR: &str = env!("CARGO_BIN_EXE_shardbar");

/// Runs `shardbar credential ARGS` with `stdin` and extra environment variables.
fn credential(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(SHARDBAR)
        .arg("credential")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardbar");
    // A run that refuses its arguments may exit before reading stdin: a broken pipe then
    // is expected, and its exit status and message are what the test checks.
    match child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    child.wait_with_output().expect("wait for shardbar")
}

/// The principal (first stdout line) as a TOML table; the run must have succeeded.
fn principal(out: &Output) -> toml::Table {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().next().expect("a principal line");
    let doc: toml::Table = toml::from_str(&format!("p = {line}")).expect("a TOML inline table");
    doc["p"].as_table().expect("a table").clone()
}

fn text<'a>(t: &'a toml::Table, key: &str) -> &'a str {
    t[key].as_str().unwrap_or_else(|| panic!("{key} in {t:?}"))
}

fn number(t: &toml::Table, key: &str) -> u32 {
    t[key].as_integer().and_then(|n| u32::try_from(n).ok()).unwrap_or_else(|| panic!("{key} in {t:?}"))
}

#[test]
fn scram_record_from_stdin_or_environment_logs_in() {
    // Goal: the printed SCRAM record plus the password logs in. Method: read the record
    // back, run the client's side (KDF, proof) from the password and the printed salt,
    // and check it with the router's side from the stored keys alone.
    for (stdin, env) in [("correct horse\n", vec![]), ("", vec![("SHARDBAR_TEST_PASSWORD", "correct horse")])] {
        let mut args = vec!["scram", "--authid", "alice", "--iterations", "3", "--memory", "64", "--role", "user"];
        if !env.is_empty() {
            args.extend(["--password-env", "SHARDBAR_TEST_PASSWORD"]);
        }
        let out = credential(&args, stdin, &env);
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        let t = principal(&out);
        assert_eq!((text(&t, "authid"), text(&t, "kdf"), text(&t, "role")), ("alice", "argon2id-13", "user"));
        let (iterations, memory) = (number(&t, "iterations"), number(&t, "memory"));
        assert_eq!((iterations, memory), (3, 64));
        let salt = secret::hex_decode(text(&t, "salt")).expect("hex salt");
        assert_eq!(salt.len(), 16);
        let kdf = Kdf::parse(text(&t, "kdf")).expect("a KDF name");
        let stored = secret::hex_decode(text(&t, "stored_key")).expect("hex stored key");
        let server = secret::hex_decode(text(&t, "server_key")).expect("hex server key");
        let client_nonce = secret::base64_encode(&[1; 16]);
        let server_nonce = scram::server_nonce(&client_nonce, &[2; 16]);
        let am = scram::auth_message("alice", &client_nonce, &server_nonce, &salt, iterations);
        let proof = scram::client_proof("correct horse", &salt, kdf, iterations, memory, &am);
        assert!(scram::verify_proof(&stored, &am, &proof));
        let wrong = scram::client_proof("correct horsf", &salt, kdf, iterations, memory, &am);
        assert!(!scram::verify_proof(&stored, &am, &wrong));
        assert_eq!(scram::derive_credential("correct horse", &salt, kdf, iterations, memory).1.to_vec(), server);
    }
}

#[test]
fn scram_defaults_are_autobahns() {
    // Goal: with no cost flags the record carries Autobahn's derive_scram_credential
    // parameters (argon2id-13, 4096 iterations, 512 KiB), and no role unless asked.
    let out = credential(&["scram", "--authid", "bob"], "pw\n", &[]);
    let t = principal(&out);
    assert_eq!((text(&t, "kdf"), number(&t, "iterations"), number(&t, "memory")), ("argon2id-13", 4096, 512));
    assert!(!t.contains_key("role"));
}

#[test]
fn wampcra_secret_salt_and_client_key() {
    // Goal: the printed WAMP-CRA principal and the derived key agree, and two runs draw
    // different secrets and salts.
    let runs: Vec<Output> =
        (0..2).map(|_| credential(&["wampcra", "--authid", "svc", "--iterations", "10"], "", &[])).collect();
    let (a, b) = (principal(&runs[0]), principal(&runs[1]));
    assert_ne!(text(&a, "secret"), text(&b, "secret"));
    assert_ne!(text(&a, "salt"), text(&b, "salt"));
    assert_eq!((number(&a, "iterations"), number(&a, "keylen")), (10, 32));
    let key = wampcra::derive_key(text(&a, "secret"), text(&a, "salt"), 10, 32);
    let stdout = String::from_utf8_lossy(&runs[0].stdout);
    let printed = stdout.lines().last().and_then(|l| l.rsplit(' ').next()).expect("a derived key line");
    assert_eq!(printed.as_bytes(), key);
    let challenge = wampcra::challenge_text("svc", "backend", "static", 1, "nonce", "2026-01-01T00:00:00.000Z");
    assert!(wampcra::verify(&key, &challenge, &wampcra::signature(&key, &challenge)));
    // A given secret, from the environment.
    let out =
        credential(&["wampcra", "--authid", "svc", "--secret-env", "CRA_SECRET"], "", &[("CRA_SECRET", "s3cr3t")]);
    assert_eq!(text(&principal(&out), "secret"), "s3cr3t");
}

#[test]
fn cryptosign_private_key_signs_for_the_printed_public_key() {
    // Goal: the printed seed is the private half of the authorized key, and the warning
    // about it goes to stderr. Method: sign a challenge with the seed, verify with the key.
    let out = credential(&["cryptosign", "--authid", "dev1", "--role", "device"], "", &[]);
    let t = principal(&out);
    let keys = t["authorized_keys"].as_array().expect("authorized_keys");
    let public = cryptosign::parse_pubkey(keys[0].as_str().expect("a hex key")).expect("a valid key");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seed_hex = stdout.lines().nth(1).and_then(|l| l.rsplit(' ').next()).expect("a private key line");
    let mut seed = [0u8; 32];
    assert!(secret::hex_decode_into(seed_hex, &mut seed));
    assert_eq!(cryptosign::keypair_from_seed(&seed), public);
    let challenge = [7u8; 32];
    assert!(cryptosign::verify(&public, &challenge, &cryptosign::sign_challenge(&seed, &challenge)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
}

#[test]
fn bad_input_exits_2_with_a_message() {
    for (args, stdin, want) in [
        (
            &["scram", "--authid", "a", "--password-env", "SHARDBAR_TEST_UNSET"][..],
            "",
            "SHARDBAR_TEST_UNSET is not set",
        ),
        (&["scram", "--authid", "a"], "", "no password on stdin"),
        (&["scram", "--authid", "a", "--kdf", "md5"], "pw\n", "expected argon2id-13 or pbkdf2"),
        (
            &[
                "cryptosign",
                "--authid",
                "a",
                "--pubkey",
                "0100000000000000000000000000000000000000000000000000000000000000",
            ],
            "",
            "valid Ed25519",
        ),
    ] {
        let out = credential(args, stdin, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
