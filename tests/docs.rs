//! The manuals and the shipped config must keep up with the code: every
//! config key in pam_mfa.toml(5) and conf/pam_mfa.toml, every command and
//! flag of `mfa --help` in mfa(1).

use pam_mfa::internals::config::Config;
use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Roff source with font escapes and escaped dashes removed.
fn plain_roff(text: &str) -> String {
    text.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\fP", "")
}

/// `key` and `section.key` for every key the config understands.
fn config_keys() -> Vec<String> {
    let value = toml::Value::try_from(Config::default()).expect("config serializes");
    let mut keys = Vec::new();
    for (key, v) in value.as_table().unwrap() {
        match v.as_table() {
            Some(section) => keys.extend(section.keys().map(|k| format!("{key}.{k}"))),
            None => keys.push(key.clone()),
        }
    }
    assert!(keys.len() >= 18, "{keys:?}");
    keys
}

#[test]
fn shipped_config_sets_every_key_to_its_default() {
    let text = repo("conf/pam_mfa.toml");
    let parsed =
        Config::parse(&text, Path::new("conf/pam_mfa.toml")).expect("shipped config parses");
    assert_eq!(parsed, Config::default());
    let value: toml::Value = toml::from_str(&text).unwrap();
    for key in config_keys() {
        let found = match key.split_once('.') {
            Some((section, k)) => value.get(section).and_then(|s| s.get(k)).is_some(),
            None => value.get(&key).is_some(),
        };
        assert!(found, "conf/pam_mfa.toml lacks `{key}`");
    }
}

#[test]
fn every_config_key_is_in_the_manual() {
    let page = plain_roff(&repo("docs/pam_mfa.toml.5"));
    for key in config_keys() {
        let short = key.rsplit('.').next().unwrap();
        assert!(
            page.contains(short),
            "pam_mfa.toml(5) does not mention `{key}`"
        );
        if let Some((section, _)) = key.split_once('.') {
            assert!(
                page.contains(&format!("[{section}]")),
                "pam_mfa.toml(5) lacks the [{section}] section"
            );
        }
    }
}

fn help(words: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(words)
        .arg("--help")
        .output()
        .expect("mfa runs");
    assert!(out.status.success(), "mfa {words:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// (subcommands, long flags) listed in one help page.
fn parse_help(text: &str) -> (Vec<String>, Vec<String>) {
    let mut commands = Vec::new();
    let mut flags = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        match section {
            "Commands" if word != "help" => commands.push(word.to_owned()),
            "Options" => {
                if let Some(long) = line.split_whitespace().find(|w| w.starts_with("--")) {
                    let long = long.trim_end_matches(',').split('=').next().unwrap();
                    if long != "--help" && long != "--version" {
                        flags.push(long.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    (commands, flags)
}

#[test]
fn every_command_and_flag_is_in_mfa_1() {
    let page = plain_roff(&repo("docs/mfa.1"));
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let (commands, flags) = parse_help(&help(&words));
        for flag in flags {
            assert!(
                page.contains(&flag),
                "mfa(1) lacks {flag} (from `mfa {} --help`)",
                words.join(" ")
            );
        }
        for command in commands {
            let mut full = path.clone();
            full.push(command);
            let phrase = full.join(" ");
            assert!(
                page.contains(&phrase),
                "mfa(1) lacks the command `{phrase}`"
            );
            pending.push(full);
            seen += 1;
        }
    }
    assert!(
        seen >= 20,
        "only {seen} commands found: is the help format parsed right?"
    );
}

/// Roff or Markdown as running text: font escapes, quotes and line breaks
/// gone, so that a message the code writes on one line is found however
/// the page wraps it.
fn running_text(text: &str) -> String {
    plain_roff(text)
        .replace("\\(dq", "\"")
        .replace("\\(lq", " ")
        .replace("\\(rq", " ")
        .replace("\\e", "\\")
        .replace("\\ ", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_documented(page: &str, text: &str, message: &str) {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains(&message),
        "{page} does not quote the message as the code writes it: {message:?}"
    );
}

/// Messages users and administrators meet, as the library writes them,
/// quoted in the pages that describe them (issue 14: the manuals had
/// drifted from the code).
#[test]
fn messages_of_the_library_are_quoted_as_written() {
    use pam_mfa::internals::login::{CHOICE_PROMPT, ENROLL_PROMPT, MSG_UNAVAILABLE, PIN_PROMPT};
    use pam_mfa::internals::onetime::INVALID_PIN;
    let pam8 = running_text(&repo("docs/pam_mfa.8"));
    let toml5 = running_text(&repo("docs/pam_mfa.toml.5"));
    let mfa1 = running_text(&repo("docs/mfa.1"));
    let guide = running_text(&repo("docs/admin-guide.md"));
    let locked = pam_mfa::internals::error::CliError::locked_for_user("NAME").to_string();
    for (page, text, message) in [
        ("pam_mfa(8)", &pam8, MSG_UNAVAILABLE),
        ("pam_mfa.toml(5)", &toml5, MSG_UNAVAILABLE),
        ("the admin guide", &guide, MSG_UNAVAILABLE),
        ("pam_mfa(8)", &pam8, INVALID_PIN),
        ("the admin guide", &guide, INVALID_PIN),
        ("pam_mfa.toml(5)", &toml5, CHOICE_PROMPT.trim_end()),
        ("mfa(1)", &mfa1, ENROLL_PROMPT.trim_end()),
        ("mfa(1)", &mfa1, PIN_PROMPT.trim_end()),
        ("mfa(1)", &mfa1, &locked),
    ] {
        assert_documented(page, text, message);
    }
}

/// Messages of the `mfa` command, produced by running it on a private
/// instance, quoted in the pages with the placeholders they use.
#[test]
fn messages_of_the_mfa_command_are_quoted_as_written() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let config = dir.join("pam_mfa.toml");
    let write = |text: &str| {
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let database = format!("database = \"{}\"\n", dir.join("db/mfa.sqlite3").display());
    write(&database);
    let mfa = |words: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_mfa"))
            .arg("--config")
            .arg(&config)
            .args(words)
            .env("LC_ALL", "C")
            .output()
            .expect("mfa runs");
        let text = String::from_utf8_lossy(&out.stderr);
        text.trim_end()
            .strip_prefix("mfa: ")
            .unwrap_or(&text)
            .to_owned()
    };
    assert!(mfa(&["admin", "init"]).is_empty());
    let mfa1 = running_text(&repo("docs/mfa.1"));
    let toml5 = running_text(&repo("docs/pam_mfa.toml.5"));

    let name = "no-such-user-pam-mfa-docs";
    let unlock = mfa(&["admin", "unlock", name]);
    assert_eq!(unlock, mfa(&["admin", "temp-code", name, "--show"]));
    assert_documented("mfa(1)", &mfa1, &unlock.replace(name, "NAME"));

    write(&format!(
        "{database}\n[sms]\nbackend = \"none\"\npolicy = \"required\"\n"
    ));
    let misplaced = mfa(&["status"]);
    let shown = config.display().to_string();
    assert_documented(
        "pam_mfa.toml(5)",
        &toml5,
        &misplaced
            .replace(&format!("{shown}:5:"), "/etc/security/pam_mfa.toml:8:")
            .replace(&shown, "/etc/security/pam_mfa.toml"),
    );
}
