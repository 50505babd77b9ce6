//! The one table (docs/providers/README.md) of how run states show on each git host is the
//! code's: every cell is checked against the git hosts' `state_columns`.

use relay_core::RunState;

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn the_readme_state_table_matches_the_code() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/providers/README.md"
    ))
    .unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| relay state | GitHub status"));
    let heading = cells(
        lines
            .next()
            .expect("docs/providers/README.md has the state table"),
    );
    let expected: Vec<&str> = std::iter::once("relay state")
        .chain(
            relay::git_host_state_columns()
                .iter()
                .map(|(name, _)| *name),
        )
        .collect();
    assert_eq!(heading, expected, "the table's columns");
    let rows: Vec<Vec<String>> = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    let mut named: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    named.sort_unstable();
    let mut states = RunState::ALL.map(RunState::as_str);
    states.sort_unstable();
    assert_eq!(named, states, "one row per relay state");
    for row in &rows {
        let state = RunState::ALL
            .into_iter()
            .find(|s| s.as_str() == row[0])
            .unwrap();
        for ((name, code), cell) in relay::git_host_state_columns().iter().zip(&row[1..]) {
            assert_eq!(cell, &code(state), "{name} for {state:?}");
        }
    }
}
