//! MCollective's `policies/groups` file, which lets a policy's caller
//! field name a group instead of every member.

use std::collections::HashMap;

use super::{caller_is, lines, LineError, PolicyError};

/// MCollective's `policies/groups` file: `<group> <caller> <caller> ...`
/// per line, so a policy's caller field can name `sysadmin` instead of
/// every admin.
///
/// ```
/// use muster_server::policy::Groups;
/// let groups = Groups::parse("# admins\nsysadmin cert=sa1 sa2.mcollective\n", "groups").unwrap();
/// assert!(groups.contains("sysadmin", "sa1"));
/// assert!(!groups.contains("sysadmin", "aa1"));
/// assert_eq!(Groups::parse("sys:admin sa1", "groups").unwrap_err().line, 1);
/// ```
#[derive(Debug, Default)]
pub struct Groups {
    /// Group name to (members, line).
    groups: HashMap<String, (Vec<String>, usize)>,
}

impl Groups {
    /// Parses a groups file's text; `file` names it in errors. Comments and
    /// line ends are as in policy files; group names are letters, digits,
    /// `_`, `.` and `-` (MCollective's `[\w.-]+`); members are separated by
    /// blanks and are caller names as a policy's caller field writes them
    /// (`cert=sa1`, `sa1.mcollective`). A group may have no members.
    pub fn parse(text: &str, file: &str) -> Result<Groups, PolicyError> {
        let mut groups: HashMap<String, (Vec<String>, usize)> = HashMap::new();
        for (line, trimmed) in lines(text, file)? {
            let error = |problem: LineError| PolicyError {
                file: file.to_string(),
                line,
                problem,
            };
            let mut words = trimmed.split_whitespace();
            let name = words.next().unwrap_or("");
            let valid = name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(error(LineError::GroupName(trimmed.to_string())));
            }
            if let Some((_, first)) = groups.get(name) {
                return Err(error(LineError::GroupTwice {
                    name: name.to_string(),
                    first: *first,
                }));
            }
            let mut members = Vec::new();
            for member in words {
                if member == "*" || member.starts_with('/') {
                    return Err(error(LineError::GroupMember {
                        group: name.to_string(),
                        member: member.to_string(),
                    }));
                }
                members.push(member.to_string());
            }
            groups.insert(name.to_string(), (members, line));
        }
        Ok(Groups { groups })
    }

    /// Whether `caller` (a certificate name) is a member of `group`.
    pub fn contains(&self, group: &str, caller: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|(members, _)| members.iter().any(|m| caller_is(m, caller)))
    }

    /// How many groups the file defines.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the file defines no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct View;

    impl muster_protocol::NodeView for View {
        fn identity(&self) -> &str {
            "node1"
        }
        fn has_class(&self, _: &dyn Fn(&str) -> bool) -> bool {
            false
        }
        fn has_agent(&self, _: &dyn Fn(&str) -> bool) -> bool {
            false
        }
        fn fact(&self, _: &str) -> Option<serde_json::Value> {
            None
        }
    }

    #[test]
    fn groups_files() {
        let groups = Groups::parse(
            "# admins\r\nsysadmin cert=sa1 sa2\tuid=sa3\r\n\n  app_admin aa1\nnobody\n",
            "groups",
        )
        .unwrap();
        assert_eq!(groups.len(), 3);
        for (group, caller, expected) in [
            ("sysadmin", "sa1", true),
            ("sysadmin", "sa2", true),
            ("sysadmin", "sa3", true),
            ("sysadmin", "aa1", false),
            ("app_admin", "aa1", true),
            ("nobody", "nobody", false),
            ("nosuch", "sa1", false),
        ] {
            assert_eq!(groups.contains(group, caller), expected, "{group} {caller}");
        }
        let policy = super::super::Policy::parse("allow\tsysadmin carol\t*\t*\t*", "t")
            .unwrap()
            .with_groups(Arc::new(groups));
        for (caller, expected) in [("sa1", true), ("carol", true), ("aa1", false)] {
            assert_eq!(
                policy.decide(caller, "x", &View).allowed,
                expected,
                "{caller}"
            );
        }
        for (text, line, message) in [
            ("ops:1 alice", 1, "expected `<group> <caller>"),
            ("# x\nops alice\nops bob", 3, "again (line 2 has it first)"),
            ("ops *", 1, "member \"*\""),
            ("ops /^a/", 1, "member \"/^a/\""),
            (
                "ops alice # on call",
                1,
                "comments must be on their own line",
            ),
        ] {
            let err = Groups::parse(text, "groups").unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(message), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("groups:{line}: ")));
        }
    }
}
