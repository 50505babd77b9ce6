//! The Terraform module read as the tests need it: python-hcl2's parse of a
//! `.tf` file, and the EventBridge rule pattern it declares for each
//! provider function, evaluated.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `file` parsed by python-hcl2 (`python3` with `hcl2`: scripts/test
/// installs it in its venv), as JSON.
pub fn hcl(file: &Path) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-hcl2 cannot parse {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The default of the variable `name` in `variables`.
pub fn default(variables: &Value, name: &str) -> Value {
    let v = variables["variable"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v.get(name))
        .unwrap_or_else(|| panic!("no variable {name}"));
    match &v["default"] {
        Value::Array(a) if a.len() == 1 => a[0].clone(),
        other => other.clone(),
    }
}

/// The event pattern of the rule the module at `module` creates for the
/// provider function `function`: `locals.events_pattern`, evaluated.
///
/// The expression is `{for f in local.functions : f => jsonencode(OBJECT)}`;
/// this evaluates the forms OBJECT uses (string templates of `var.NAME`,
/// taking the variable's default, and of `replace(f, "/[^a-z0-9]/", "")`)
/// and fails on any other, so a change of the expression's shape is seen
/// rather than tested past.
pub fn event_pattern(module: &Path, function: &str) -> Value {
    let main = hcl(&module.join("main.tf"));
    let variables = hcl(&module.join("variables.tf"));
    let expr = main["locals"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l.get("events_pattern"))
        .and_then(|v| v[0].as_str())
        .expect("locals.events_pattern")
        .to_string();
    let object = expr
        .strip_prefix("${{for f in local.functions : f => jsonencode(")
        .and_then(|rest| rest.strip_suffix(")}}"))
        .unwrap_or_else(|| panic!("events_pattern is not a jsonencode per function: {expr}"));
    let mut evaluated = String::new();
    let mut rest = object;
    while let Some(start) = rest.find("${") {
        evaluated.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("a closed interpolation");
        let term = &rest[start + 2..end];
        let value = if let Some(var) = term.strip_prefix("var.") {
            default(&variables, var)
                .as_str()
                .unwrap_or_else(|| panic!("var.{var} has no string default"))
                .to_string()
        } else if term == r#"replace(f, "/[^a-z0-9]/", "")"# {
            function
                .chars()
                .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                .collect()
        } else {
            panic!("this evaluator does not know ${{{term}}}: extend it");
        };
        evaluated.push_str(&value);
        rest = &rest[end + 1..];
    }
    evaluated.push_str(rest);
    // python-hcl2 writes the object as Python does: single-quoted strings
    // (none of the values holds a quote).
    serde_json::from_str(&evaluated.replace('\'', "\""))
        .unwrap_or_else(|e| panic!("{e}: {evaluated}"))
}
