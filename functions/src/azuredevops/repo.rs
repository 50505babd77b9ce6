//! Organization, project and repository of an Azure Repos clone URL.
//!
//! The shared decoder splits URLs the GitHub way (owner = every segment but
//! the last), which leaves `org/project/_git` as the owner: the three parts
//! are read here from the URL itself.

/// An Azure Repos repository, with every part percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoRepo {
    /// The organization (a collection on Azure DevOps Server).
    pub organization: String,
    pub project: String,
    pub repository: String,
}

/// Reads these forms (a trailing `.git` or `/` is ignored):
///
/// - `https://dev.azure.com/{org}/{project}/_git/{repo}`, also with `{org}@`
///   before the host
/// - `https://{org}.visualstudio.com[/DefaultCollection]/{project}/_git/{repo}`
/// - `https://server[/tfs]/{collection}/{project}/_git/{repo}` (Azure DevOps Server)
/// - SSH: `git@ssh.dev.azure.com:v3/{org}/{project}/{repo}`,
///   `{org}@vs-ssh.visualstudio.com:v3/{org}/{project}/{repo}`
///
/// A repository named like its project may omit the project
/// (`https://dev.azure.com/{org}/_git/{repo}`).
pub fn parse(url: &str) -> Result<AdoRepo, String> {
    let not_azure =
        || format!("{url:?} is not an Azure Repos URL (…/{{project}}/_git/{{repository}})");
    if let Some((_, path)) = url.split_once(":v3/") {
        let parts: Vec<String> = segments(path).map(decode).collect();
        return match <[String; 3]>::try_from(parts) {
            Ok([organization, project, repository]) => Ok(AdoRepo {
                organization,
                project,
                repository,
            }),
            Err(_) => Err(not_azure()),
        };
    }
    let parsed = url::Url::parse(url).map_err(|_| not_azure())?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(not_azure());
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let segs: Vec<String> = segments(parsed.path()).map(decode).collect();
    let git = segs
        .iter()
        .position(|s| s == "_git")
        .ok_or_else(not_azure)?;
    let repository = match &segs[git + 1..] {
        [r] => r.clone(),
        _ => return Err(not_azure()),
    };
    let before = &segs[..git];
    if let Some(org) = host.strip_suffix(".visualstudio.com") {
        // The legacy host names the organization; a path may still carry
        // the old `DefaultCollection`.
        let before = match before {
            [c, rest @ ..] if c.eq_ignore_ascii_case("DefaultCollection") => rest,
            b => b,
        };
        let project = match before {
            [] => repository.clone(),
            [p] => p.clone(),
            _ => return Err(not_azure()),
        };
        return Ok(AdoRepo {
            organization: org.to_string(),
            project,
            repository,
        });
    }
    // dev.azure.com or a server: `{org}/{project}`, or `{org}` alone when
    // the project is named like the repository (only on dev.azure.com: on a
    // server a path prefix like `/tfs` would be taken for the organization).
    let (organization, project) = match before {
        [org] if host == "dev.azure.com" => (org.clone(), repository.clone()),
        [.., org, project] => (org.clone(), project.clone()),
        _ => return Err(not_azure()),
    };
    Ok(AdoRepo {
        organization,
        project,
        repository,
    })
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.split('/').filter(|s| !s.is_empty())
}

/// Percent-decoding (a `+` stays a `+`: this is a path, not a form).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, String, String) {
        let r = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        (r.organization, r.project, r.repository)
    }

    fn t(o: &str, p: &str, r: &str) -> (String, String, String) {
        (o.into(), p.into(), r.into())
    }

    #[test]
    fn the_url_forms() {
        assert_eq!(
            ok("https://dev.azure.com/acme/Widget%20Team/_git/widgets"),
            t("acme", "Widget Team", "widgets")
        );
        assert_eq!(
            ok("https://acme@dev.azure.com/acme/Widget%20Team/_git/widgets.git/"),
            t("acme", "Widget Team", "widgets")
        );
        assert_eq!(
            ok("https://acme.visualstudio.com/Widget%20Team/_git/widgets"),
            t("acme", "Widget Team", "widgets")
        );
        assert_eq!(
            ok("https://acme.visualstudio.com/DefaultCollection/Widgets/_git/api"),
            t("acme", "Widgets", "api")
        );
        assert_eq!(
            ok("https://dev.azure.com/acme/_git/widgets"),
            t("acme", "widgets", "widgets")
        );
        assert_eq!(
            ok("https://ado.example.com/tfs/DefaultCollection/Widgets/_git/a+b"),
            t("DefaultCollection", "Widgets", "a+b")
        );
        assert_eq!(
            ok("git@ssh.dev.azure.com:v3/acme/Widget%20Team/widgets"),
            t("acme", "Widget Team", "widgets")
        );
        assert_eq!(
            ok("acme@vs-ssh.visualstudio.com:v3/acme/Widgets/widgets"),
            t("acme", "Widgets", "widgets")
        );
    }

    #[test]
    fn what_is_not_an_azure_repos_url() {
        for bad in [
            "https://github.com/acme/widgets",
            "https://dev.azure.com/acme/Widgets/_git",
            "https://dev.azure.com/acme/Widgets/_git/widgets/extra",
            "https://dev.azure.com/_git/widgets",
            "https://ado.example.com/_git/widgets",
            "ftp://dev.azure.com/acme/p/_git/r",
            "git@ssh.dev.azure.com:v3/acme/widgets",
            "not a url",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("not an Azure Repos URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn decoding_keeps_bad_escapes() {
        assert_eq!(decode("a%20b%2Fc%zz%4"), "a b/c%zz%4");
        assert_eq!(decode("%C3%A9t%C3%A9"), "été");
    }
}
