//! The push policy of the `pre-receive` hook: a push deploys when it updates `main` or `master`; everything else
//! (other branches, tags, deleting a deploy branch, both deploy branches at once) is refused before anything is
//! built, with a message that says what does deploy.

use super::DEPLOY_BRANCHES;

/// One line of the hook's input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    pub old: String,
    pub new: String,
    pub refname: String,
}

impl Update {
    /// The branch name, for `refs/heads/<branch>`.
    pub(crate) fn branch(&self) -> Option<&str> {
        self.refname.strip_prefix("refs/heads/")
    }

    /// Whether the ref did not exist before the push.
    pub(crate) fn creates(&self) -> bool {
        is_zero(&self.old)
    }

    fn deletes(&self) -> bool {
        is_zero(&self.new)
    }
}

/// The all-zero object id git uses for "no object" (of any hash length).
fn is_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the hook's standard input.
pub(crate) fn parse_updates(input: &str) -> Result<Vec<Update>, String> {
    input
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some(old), Some(new), Some(refname), None)
                    if is_object_id(old) && is_object_id(new) =>
                {
                    Ok(Update {
                        old: old.to_string(),
                        new: new.to_string(),
                        refname: refname.to_string(),
                    })
                }
                _ => Err(format!(
                    "unexpected input from git: {line:?} (expected `<old> <new> <ref>`)"
                )),
            }
        })
        .collect()
}

/// The one update to deploy, `None` when the push changes nothing, or why the push is refused.
pub(crate) fn plan(updates: &[Update]) -> Result<Option<&Update>, String> {
    let deploys = DEPLOY_BRANCHES.join(" or ");
    if let Some(other) = updates
        .iter()
        .find(|u| !u.branch().is_some_and(|b| DEPLOY_BRANCHES.contains(&b)))
    {
        let hint = match other.branch() {
            Some(branch) if !other.deletes() => {
                format!(" (to deploy it: git push <remote> {branch}:main)")
            }
            _ => String::new(),
        };
        return Err(format!(
            "refusing to push {}: only pushes to {deploys} deploy, and nothing else is kept{hint}",
            other.refname
        ));
    }
    if let Some(deleted) = updates.iter().find(|u| u.deletes()) {
        return Err(format!(
            "refusing to delete {}: it is the branch that deploys (to stop the app: wasmdyno ps:scale web=0)",
            deleted.refname
        ));
    }
    match updates {
        [] => Ok(None),
        [update] => Ok(Some(update)),
        _ => Err(format!(
            "refusing to push {deploys} at once: push the one branch to deploy"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn update(old: &str, new: &str, refname: &str) -> Update {
        Update {
            old: old.into(),
            new: new.into(),
            refname: refname.into(),
        }
    }

    #[test]
    fn input_lines_parse() {
        let input = format!("{A} {B} refs/heads/main\n{ZERO} {A} refs/heads/master\n");
        assert_eq!(
            parse_updates(&input).unwrap(),
            vec![
                update(A, B, "refs/heads/main"),
                update(ZERO, A, "refs/heads/master")
            ]
        );
        assert!(parse_updates("nonsense\n").is_err());
        assert!(parse_updates(&format!("{A} {B}\n")).is_err());
        assert!(parse_updates("").unwrap().is_empty());
    }

    #[test]
    fn main_or_master_deploy() {
        for branch in ["refs/heads/main", "refs/heads/master"] {
            let updates = [update(A, B, branch)];
            assert_eq!(plan(&updates).unwrap(), Some(&updates[0]));
        }
        let created = [update(ZERO, B, "refs/heads/main")];
        assert!(plan(&created).unwrap().unwrap().creates());
        assert_eq!(plan(&[]).unwrap(), None);
    }

    #[test]
    fn everything_else_is_refused_with_what_deploys() {
        let err = plan(&[update(ZERO, B, "refs/heads/feature")]).unwrap_err();
        assert!(err.contains("refs/heads/feature"), "{err}");
        assert!(err.contains("main or master"), "{err}");
        assert!(err.contains("git push <remote> feature:main"), "{err}");

        let err = plan(&[update(ZERO, B, "refs/tags/v1")]).unwrap_err();
        assert!(
            err.contains("refs/tags/v1") && err.contains("main or master"),
            "{err}"
        );

        // One refused ref refuses the whole push, deploy branch included.
        let err = plan(&[
            update(A, B, "refs/heads/main"),
            update(ZERO, B, "refs/heads/feature"),
        ])
        .unwrap_err();
        assert!(err.contains("refs/heads/feature"), "{err}");

        let err = plan(&[update(A, ZERO, "refs/heads/main")]).unwrap_err();
        assert!(err.contains("refusing to delete refs/heads/main"), "{err}");

        let err = plan(&[
            update(A, B, "refs/heads/main"),
            update(A, B, "refs/heads/master"),
        ])
        .unwrap_err();
        assert!(err.contains("at once"), "{err}");
    }
}
