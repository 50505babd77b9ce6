//! Shell command lines of the docs, split as the shell splits them, for the
//! tests that check every command of a guide.

use std::process::Command;

/// The words of `line` as a POSIX shell splits them (quotes, escapes, a
/// `#` comment), by Python's `shlex`. Variables are left as written.
pub fn words(line: &str) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, shlex, sys; print(json.dumps(shlex.split(sys.argv[1], comments=True)))",
        ])
        .arg(line)
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The commands of the `sh` blocks of `text`: continued lines joined, each
/// line's commands split at `&&`.
pub fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut line = String::new();
    for l in text.lines() {
        match l.trim_start().strip_prefix("```") {
            Some(lang) if !in_sh => in_sh = lang.trim() == "sh",
            Some(_) => in_sh = false,
            None if in_sh => match l.strip_suffix('\\') {
                Some(head) => line.push_str(head),
                None => {
                    line.push_str(l);
                    out.extend(
                        std::mem::take(&mut line)
                            .split(" && ")
                            .map(|c| c.trim().to_string())
                            .filter(|c| !c.is_empty()),
                    );
                }
            },
            None => {}
        }
    }
    out
}
