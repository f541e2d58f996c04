//! The diff between the directory and the tenant: what a sync would do with each entry, and
//! whether mirror mode may deactivate anyone. Pure (no I/O), so the dry run and the real run
//! are one plan rendered twice, and every rule is tested without a server.

use std::collections::{HashMap, HashSet};

use nebula_plugin_api::serde_json::{json, Value};
use nebula_plugin_api::{
    normalize_email, normalize_role_tag, validate_username, DirectoryUser, SyncRequest, SyncUser,
};

use crate::directory::LdapUser;
use crate::settings::{Mode, Settings};

/// What a sync does with one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not in the tenant: created.
    Create,
    /// In the tenant with other values: updated (the fields that differ).
    Update(Vec<&'static str>),
    /// In the tenant as LDAP has it: nothing written.
    Unchanged,
    /// Synced by this plugin before, active, and no longer in LDAP: deactivated (mirror).
    Deactivate,
    /// Cannot be synced (no username, an invalid one, a duplicate): the reason.
    Fail(String),
}

impl Action {
    /// The item's action in a dry run.
    pub fn preview(&self) -> &'static str {
        match self {
            Action::Create => "would_create",
            Action::Update(_) => "would_update",
            Action::Unchanged => "unchanged",
            Action::Deactivate => "would_deactivate",
            Action::Fail(_) => "would_fail",
        }
    }
}

/// One user of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The username (as LDAP has it, trimmed), or the DN's when there is none.
    pub username: String,
    /// The entry's DN (none for a deactivation: the entry is gone).
    pub dn: Option<String>,
    /// What happens.
    pub action: Action,
    /// What is written for a create, update or deactivation.
    pub write: Option<SyncUser>,
}

/// Whether mirror mode deactivates, and why not.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorDecision {
    /// Deactivations are in the plan.
    pub applied: bool,
    /// Users read from LDAP (distinct usernames).
    pub read: usize,
    /// Active users of the tenant this plugin synced before.
    pub previously_synced: usize,
    /// Of those, the ones LDAP no longer has (in the request's selection).
    pub missing: usize,
    /// Why nothing is deactivated, when it is not.
    pub reason: Option<String>,
}

impl MirrorDecision {
    /// The answer's `mirror` object.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "applied": self.applied, "read": self.read,
            "previously_synced": self.previously_synced, "missing": self.missing,
        });
        if let Some(reason) = &self.reason {
            value["reason"] = reason.as_str().into();
        }
        value
    }
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One per LDAP entry selected (sorted by username), then one per deactivation.
    pub items: Vec<Item>,
    /// Mirror mode's decision; `None` in upsert mode.
    pub mirror: Option<MirrorDecision>,
    /// Usernames the request named that LDAP does not have (only when it named some).
    pub not_in_directory: Option<Vec<String>>,
}

/// Plans a sync of `entries` into the tenant whose users are `existing` (username → user).
pub fn plan(
    settings: &Settings,
    plugin: &str,
    entries: &[LdapUser],
    existing: &HashMap<String, DirectoryUser>,
    request: &SyncRequest,
) -> Plan {
    // Every username LDAP has, valid or not: a user LDAP still has is never deactivated,
    // even when its entry cannot be synced.
    let in_ldap: HashSet<&str> = entries
        .iter()
        .filter_map(|e| e.username.as_deref().map(str::trim))
        .collect();
    // An empty list means everyone, as no list does: a panel sends `[]` to a plugin that
    // brings its own users.
    let wanted: Option<HashSet<&str>> = request
        .users
        .as_ref()
        .filter(|users| !users.is_empty())
        .map(|users| users.iter().map(|u| u.username.trim()).collect());

    let mut selected: Vec<&LdapUser> = entries
        .iter()
        .filter(|e| match (&wanted, &e.username) {
            (None, _) => true,
            (Some(wanted), Some(name)) => wanted.contains(name.trim()),
            (Some(_), None) => false,
        })
        .collect();
    selected.sort_by(|a, b| {
        (a.username.as_deref().map(str::trim), &a.dn)
            .cmp(&(b.username.as_deref().map(str::trim), &b.dn))
    });
    let selected = request.apply_limit(&selected);

    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut items: Vec<Item> = selected
        .iter()
        .map(|entry| item_for(settings, entry, existing, &mut seen))
        .collect();

    let not_in_directory = wanted.as_ref().map(|wanted| {
        let mut missing: Vec<String> = wanted
            .iter()
            .filter(|name| !in_ldap.contains(*name))
            .map(|name| (*name).to_owned())
            .collect();
        missing.sort();
        missing
    });

    let mirror = (settings.mode == Mode::Mirror).then(|| {
        mirror(
            settings,
            plugin,
            &in_ldap,
            existing,
            request,
            wanted.as_ref(),
        )
    });
    if let Some((decision, deactivations)) = &mirror {
        if decision.applied {
            items.extend(deactivations.iter().cloned());
        }
    }
    Plan {
        items,
        mirror: mirror.map(|(decision, _)| decision),
        not_in_directory,
    }
}

/// The item of one LDAP entry.
fn item_for<'a>(
    settings: &Settings,
    entry: &'a LdapUser,
    existing: &HashMap<String, DirectoryUser>,
    seen: &mut HashMap<String, &'a str>,
) -> Item {
    let fail = |username: String, why: String| Item {
        username,
        dn: Some(entry.dn.clone()),
        action: Action::Fail(why),
        write: None,
    };
    let Some(raw) = entry.username.as_deref() else {
        return fail(
            entry.dn.clone(),
            format!("no {} attribute", settings.username_attribute),
        );
    };
    let username = match validate_username(raw) {
        Ok(name) => name,
        Err(e) => return fail(raw.trim().to_owned(), e.to_string()),
    };
    if let Some(first) = seen.insert(username.clone(), &entry.dn) {
        seen.insert(username.clone(), first);
        return fail(
            username,
            format!("duplicate username in LDAP (also {first})"),
        );
    }
    let email = match normalize_email(entry.email.as_deref()) {
        Ok(email) => email,
        Err(e) => return fail(username, e.to_string()),
    };
    let desired = SyncUser {
        username: username.clone(),
        db_name: settings.db_name.clone(),
        role_tag: normalize_role_tag(settings.role_tag_for(&entry.groups)),
        email,
        is_active: !entry.disabled,
    };
    let action = match existing.get(&username) {
        None => Action::Create,
        Some(current) => {
            let mut changed = Vec::new();
            if current.email != desired.email {
                changed.push("email");
            }
            if current.is_active != desired.is_active {
                changed.push("is_active");
            }
            if current.role_tag != desired.role_tag {
                changed.push("role_tag");
            }
            if changed.is_empty() {
                Action::Unchanged
            } else {
                Action::Update(changed)
            }
        }
    };
    let write = matches!(action, Action::Create | Action::Update(_)).then_some(desired);
    Item {
        username,
        dn: Some(entry.dn.clone()),
        action,
        write,
    }
}

/// Mirror mode: who LDAP no longer has, and whether the read may be trusted to say so.
fn mirror(
    settings: &Settings,
    plugin: &str,
    in_ldap: &HashSet<&str>,
    existing: &HashMap<String, DirectoryUser>,
    request: &SyncRequest,
    wanted: Option<&HashSet<&str>>,
) -> (MirrorDecision, Vec<Item>) {
    let mut previously: Vec<&DirectoryUser> = existing
        .values()
        .filter(|u| u.is_active && u.synced_by.as_deref() == Some(plugin))
        .collect();
    previously.sort_by(|a, b| a.username.cmp(&b.username));
    let gone: Vec<&DirectoryUser> = previously
        .iter()
        .copied()
        .filter(|u| !in_ldap.contains(u.username.as_str()))
        .filter(|u| wanted.is_none_or(|w| w.contains(u.username.as_str())))
        .collect();
    let read = in_ldap.len();
    // The smallest read trusted: the share of what this plugin synced before, rounded up.
    let needed = (settings.mirror_min_fraction * previously.len() as f64).ceil() as usize;
    let reason = if request.limit != 0 {
        Some(format!(
            "the sync was limited to {} users: a partial read never deactivates anyone",
            request.limit
        ))
    } else if read < needed {
        Some(format!(
            "LDAP returned {read} users, fewer than {needed} ({}% of the {} active users this \
             plugin synced before): nothing deactivated. Check user_base_dn and user_filter, \
             or lower mirror_min_fraction if the directory really shrank",
            (settings.mirror_min_fraction * 100.0).round(),
            previously.len()
        ))
    } else {
        None
    };
    let items = gone
        .iter()
        .map(|u| Item {
            username: u.username.clone(),
            dn: None,
            action: Action::Deactivate,
            write: Some(SyncUser {
                username: u.username.clone(),
                db_name: settings.db_name.clone(),
                role_tag: u.role_tag.clone(),
                email: u.email.clone(),
                is_active: false,
            }),
        })
        .collect();
    let decision = MirrorDecision {
        applied: reason.is_none(),
        read,
        previously_synced: previously.len(),
        missing: gone.len(),
        reason,
    };
    (decision, items)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use nebula_plugin_api::testing::RecordingHost;
    use nebula_plugin_api::{json_object, ScopeSet};

    use super::*;

    fn settings(mode: &str) -> Settings {
        let host = RecordingHost::new();
        let table = json_object!({
            "url": "ldap://127.0.0.1:1", "user_base_dn": "ou=people,dc=x", "db_name": "acme",
            "mode": mode, "role_map": [
                {"group": "ops", "role_tag": "operator"}, {"group": "admins", "role_tag": "admin"},
            ],
        });
        let ctx = host
            .context("ldap_sync", ScopeSet::all())
            .with_settings(table);
        Settings::required(&ctx).unwrap()
    }

    fn entry(uid: &str, groups: &[&str]) -> LdapUser {
        LdapUser {
            dn: format!("uid={uid},ou=people,dc=x"),
            username: Some(uid.to_owned()),
            email: Some(format!("{uid}@x.org")),
            disabled: false,
            groups: groups
                .iter()
                .map(|g| (*g).to_owned())
                .collect::<HashSet<_>>(),
        }
    }

    fn stored(uid: &str, synced_by: Option<&str>) -> (String, DirectoryUser) {
        let user = DirectoryUser {
            username: uid.to_owned(),
            email: Some(format!("{uid}@x.org")),
            is_active: true,
            is_staff: false,
            role_tag: "user".into(),
            synced_by: synced_by.map(str::to_owned),
        };
        (uid.to_owned(), user)
    }

    fn actions(plan: &Plan) -> Vec<String> {
        plan.items
            .iter()
            .map(|i| format!("{} {}", i.username, i.action.preview()))
            .collect()
    }

    #[test]
    fn each_entry_is_created_updated_with_its_fields_unchanged_or_failed() {
        let s = settings("upsert");
        let mut changed = entry("bob", &["admins", "ops"]);
        changed.disabled = true;
        let mut no_name = entry("x", &[]);
        no_name.username = None;
        let entries = [
            entry("ann", &[]),
            changed,
            entry("cid", &[]),
            no_name,
            entry("ann", &[]),
        ];
        let existing: HashMap<_, _> = [stored("bob", None), stored("cid", None)].into();
        let plan = plan(
            &s,
            "ldap_sync",
            &entries,
            &existing,
            &SyncRequest::default(),
        );
        assert_eq!(
            actions(&plan),
            [
                "uid=x,ou=people,dc=x would_fail",
                "ann would_create",
                "ann would_fail",
                "bob would_update",
                "cid unchanged",
            ]
        );
        assert_eq!(
            plan.items[3].action,
            Action::Update(vec!["is_active", "role_tag"])
        );
        // The first mapped group in role_map's order wins.
        assert_eq!(plan.items[3].write.as_ref().unwrap().role_tag, "operator");
        assert!(matches!(&plan.items[2].action, Action::Fail(why) if why.contains("duplicate")));
        assert!(plan.mirror.is_none(), "upsert mode never deactivates");
    }

    #[test]
    fn a_request_naming_users_selects_them_and_names_the_missing_an_empty_list_means_all() {
        let s = settings("upsert");
        let entries = [entry("ann", &[]), entry("bob", &[])];
        let request = SyncRequest {
            users: Some(vec![SyncUser::new(" bob "), SyncUser::new("zed")]),
            ..SyncRequest::default()
        };
        let plan = plan(&s, "ldap_sync", &entries, &HashMap::new(), &request);
        assert_eq!(actions(&plan), ["bob would_create"]);
        assert_eq!(plan.not_in_directory, Some(vec!["zed".to_owned()]));

        let everyone = SyncRequest {
            users: Some(Vec::new()),
            ..SyncRequest::default()
        };
        let plan = super::plan(&s, "ldap_sync", &entries, &HashMap::new(), &everyone);
        assert_eq!(plan.items.len(), 2);
        assert_eq!(plan.not_in_directory, None);
    }

    #[test]
    fn mirror_deactivates_only_what_this_plugin_synced_and_ldap_lost() {
        let s = settings("mirror");
        let entries: Vec<LdapUser> = (0..9).map(|i| entry(&format!("u{i}"), &[])).collect();
        let mut existing: HashMap<_, _> = (0..10)
            .map(|i| stored(&format!("u{i}"), Some("ldap_sync")))
            .collect();
        existing.extend([stored("other", Some("csv_import")), stored("local", None)]);
        let plan = plan(
            &s,
            "ldap_sync",
            &entries,
            &existing,
            &SyncRequest::default(),
        );
        let gone: Vec<&Item> = plan
            .items
            .iter()
            .filter(|i| i.action == Action::Deactivate)
            .collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].username, "u9");
        let write = gone[0].write.as_ref().unwrap();
        assert!(!write.is_active && write.email.as_deref() == Some("u9@x.org"));
        let decision = plan.mirror.unwrap();
        assert!(decision.applied && decision.reason.is_none());
        assert_eq!(
            (decision.read, decision.previously_synced, decision.missing),
            (9, 10, 1)
        );
    }

    #[test]
    fn mirror_refuses_a_small_or_limited_read_and_says_why() {
        let s = settings("mirror");
        let existing: HashMap<_, _> = (0..10)
            .map(|i| stored(&format!("u{i}"), Some("ldap_sync")))
            .collect();
        let half: Vec<LdapUser> = (0..5).map(|i| entry(&format!("u{i}"), &[])).collect();
        let plan = plan(&s, "ldap_sync", &half, &existing, &SyncRequest::default());
        assert!(plan.items.iter().all(|i| i.action != Action::Deactivate));
        let decision = plan.mirror.unwrap();
        assert!(!decision.applied);
        assert_eq!(decision.missing, 5);
        let reason = decision.reason.unwrap();
        assert!(reason.contains("5 users, fewer than 9"), "{reason}");

        let all: Vec<LdapUser> = (0..9).map(|i| entry(&format!("u{i}"), &[])).collect();
        let limited = SyncRequest {
            limit: 3,
            ..SyncRequest::default()
        };
        let plan = super::plan(&s, "ldap_sync", &all, &existing, &limited);
        assert_eq!(plan.items.len(), 3);
        let decision = plan.mirror.unwrap();
        assert!(!decision.applied && decision.reason.unwrap().contains("limited"));

        // An inactive user synced before is not counted: a directory that shrank by
        // deactivations is not suspicious at the next run.
        let mut shrunk = existing.clone();
        for i in 5..10 {
            shrunk.get_mut(&format!("u{i}")).unwrap().is_active = false;
        }
        let plan = super::plan(&s, "ldap_sync", &half, &shrunk, &SyncRequest::default());
        assert!(plan.mirror.unwrap().applied);
    }
}
