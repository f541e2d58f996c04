//! Reading the LDAP directory: connect (TLS, StartTLS, a CA file), bind, and the paged
//! searches for users, disabled users and groups. Nothing here knows about Nebula's users.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::settings::Settings;

/// Why the directory could not be read. The texts name the step and the server's answer,
/// never the password.
#[derive(Debug, thiserror::Error)]
pub enum LdapFailure {
    /// The TLS settings could not be used (the CA file).
    #[error("TLS: {0}")]
    Tls(String),
    /// No connection (refused, timed out, TLS handshake).
    #[error("cannot connect to {url}: {error}")]
    Connect {
        /// The configured URL.
        url: String,
        /// What the client said.
        error: String,
    },
    /// The server refused the bind.
    #[error("bind as '{dn}' refused: {error}")]
    Bind {
        /// The bind DN (`anonymous` for none).
        dn: String,
        /// What the server said.
        error: String,
    },
    /// A search failed or was cut off.
    #[error("reading {what} under '{base}' failed: {error}")]
    Search {
        /// users, disabled users, groups, the base entry.
        what: &'static str,
        /// The search base.
        base: String,
        /// What the server or the client said.
        error: String,
    },
}

/// A user entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUser {
    /// The entry's DN, as the server wrote it.
    pub dn: String,
    /// The username attribute's first value; `None` when the entry has none.
    pub username: Option<String>,
    /// The e-mail attribute's first value.
    pub email: Option<String>,
    /// Whether the entry matches `disabled_filter`.
    pub disabled: bool,
    /// The mapped groups it is a member of (their `cn`, lower-cased).
    pub groups: HashSet<String>,
}

/// A connected, bound client.
pub struct Connection {
    ldap: Ldap,
    settings: Arc<Settings>,
}

impl Connection {
    /// Connects to `settings.url` (TLS as configured) and binds; both bounded by the timeout.
    pub async fn open(settings: Arc<Settings>) -> Result<Connection, LdapFailure> {
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(settings.timeout)
            .set_starttls(settings.starttls);
        if let Some(ca_file) = settings.ca_file.clone() {
            // Reading the file is blocking I/O: on the blocking pool, not an async worker.
            let config = tokio::task::spawn_blocking(move || tls_config(&ca_file))
                .await
                .map_err(|e| LdapFailure::Tls(format!("reading ca_file: {e}")))??;
            conn_settings = conn_settings.set_config(config);
        }
        let connect = LdapConnAsync::with_settings(conn_settings, &settings.url);
        let (conn, mut ldap) = tokio::time::timeout(settings.timeout, connect)
            .await
            .map_err(|_| LdapFailure::Connect {
                url: settings.url.clone(),
                error: format!("no answer within {:?}", settings.timeout),
            })?
            .map_err(|e| LdapFailure::Connect {
                url: settings.url.clone(),
                error: e.to_string(),
            })?;
        // The connection's own task: it ends when the `Ldap` handles are dropped or the
        // server goes away (an operation then fails with the reason).
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        if let Some(dn) = &settings.bind_dn {
            let bound = ldap
                .with_timeout(settings.timeout)
                .simple_bind(dn, &settings.bind_password)
                .await
                .and_then(|r| r.success());
            if let Err(e) = bound {
                return Err(LdapFailure::Bind {
                    dn: dn.clone(),
                    error: e.to_string(),
                });
            }
        }
        Ok(Connection { ldap, settings })
    }

    /// Reads the user base entry itself: the health check's proof that the bind may read.
    pub async fn read_base(&mut self) -> Result<(), LdapFailure> {
        let base = self.settings.user_base_dn.clone();
        let fail = |e: ldap3::LdapError| LdapFailure::Search {
            what: "the base entry",
            base: base.clone(),
            error: e.to_string(),
        };
        let (entries, _) = self
            .ldap
            .with_timeout(self.settings.timeout)
            .search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(fail)?;
        if entries.is_empty() {
            return Err(LdapFailure::Search {
                what: "the base entry",
                base,
                error: "no such entry visible to this bind".into(),
            });
        }
        Ok(())
    }

    /// Every user entry, with its state and mapped groups: three paged searches (users,
    /// disabled users when `disabled_filter` is set, groups when `role_map` and
    /// `group_base_dn` are). Any failure, a page cut off included, fails the whole read: a
    /// partial read is never returned as a complete one.
    pub async fn read_users(&mut self) -> Result<Vec<LdapUser>, LdapFailure> {
        let s = Arc::clone(&self.settings);
        let attrs = vec![s.username_attribute.clone(), s.email_attribute.clone()];
        let mut users: Vec<LdapUser> = Vec::new();
        self.search("users", &s.user_base_dn, &s.user_filter, attrs, |entry| {
            users.push(LdapUser {
                username: first_value(&entry, &s.username_attribute),
                email: first_value(&entry, &s.email_attribute),
                dn: entry.dn,
                disabled: false,
                groups: HashSet::new(),
            });
        })
        .await?;

        if let Some(disabled_filter) = &s.disabled_filter {
            let filter = format!("(&{}{})", s.user_filter.trim(), disabled_filter.trim());
            let mut disabled = HashSet::new();
            self.search(
                "disabled users",
                &s.user_base_dn,
                &filter,
                vec!["1.1".to_owned()],
                |entry| {
                    disabled.insert(normalize_dn(&entry.dn));
                },
            )
            .await?;
            for user in &mut users {
                user.disabled = disabled.contains(&normalize_dn(&user.dn));
            }
        }

        if let (Some(group_base), false) = (&s.group_base_dn, s.role_map.is_empty()) {
            let mapped: HashSet<String> =
                s.role_map.iter().map(|m| m.group.to_lowercase()).collect();
            // Member value (a DN normalised, or a username for memberUid) → mapped groups.
            let mut member_of: HashMap<String, HashSet<String>> = HashMap::new();
            let attrs = vec!["cn".to_owned(), s.group_member_attribute.clone()];
            self.search("groups", group_base, &s.group_filter, attrs, |entry| {
                let names: Vec<String> = values(&entry, "cn")
                    .map(|cn| cn.to_lowercase())
                    .filter(|cn| mapped.contains(cn))
                    .collect();
                if names.is_empty() {
                    return;
                }
                for member in values(&entry, &s.group_member_attribute) {
                    member_of
                        .entry(member_key(member))
                        .or_default()
                        .extend(names.iter().cloned());
                }
            })
            .await?;
            for user in &mut users {
                let mut groups = member_of
                    .get(&normalize_dn(&user.dn))
                    .cloned()
                    .unwrap_or_default();
                if let Some(name) = &user.username {
                    if let Some(by_name) = member_of.get(&name.trim().to_lowercase()) {
                        groups.extend(by_name.iter().cloned());
                    }
                }
                user.groups = groups;
            }
        }
        Ok(users)
    }

    /// One paged subtree search, each entry handed to `each`; referrals are skipped.
    async fn search(
        &mut self,
        what: &'static str,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
        mut each: impl FnMut(SearchEntry),
    ) -> Result<(), LdapFailure> {
        let fail = |e: ldap3::LdapError| LdapFailure::Search {
            what,
            base: base.to_owned(),
            error: e.to_string(),
        };
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size)),
        ];
        let mut stream = self
            .ldap
            .with_timeout(self.settings.timeout)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await
            .map_err(fail)?;
        while let Some(entry) = stream.next().await.map_err(fail)? {
            each(SearchEntry::construct(entry));
        }
        stream.finish().await.success().map_err(fail)?;
        Ok(())
    }

    /// Unbinds, politely; a failure here changes nothing already read.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// A client TLS configuration trusting exactly the certificates of `ca_file` (PEM).
fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapFailure> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let fail = |why: String| LdapFailure::Tls(format!("ca_file '{}': {why}", ca_file.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The values of `attribute` (its name compared without regard to case, as LDAP does).
fn values<'a>(entry: &'a SearchEntry, attribute: &'a str) -> impl Iterator<Item = &'a str> {
    entry
        .attrs
        .iter()
        .filter(move |(name, _)| name.eq_ignore_ascii_case(attribute))
        .flat_map(|(_, values)| values.iter().map(String::as_str))
}

/// The first non-empty value of `attribute`, trimmed.
fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    values(entry, attribute)
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A DN in the form it is compared in: lower-cased, without spaces around `,` and `=`.
/// (LDAP compares most naming attributes without regard to case; this is not a full RFC 4514
/// canonicalisation, which no server needs here: member values are written by the same
/// server that names the entries.)
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// The key a member value is looked up by: a DN normalised, or a bare username
/// (`memberUid`) lower-cased.
fn member_key(value: &str) -> String {
    if value.contains('=') {
        normalize_dn(value)
    } else {
        value.trim().to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(
            normalize_dn("UID=Ann, OU=People ,dc=Example,dc=org"),
            "uid=ann,ou=people,dc=example,dc=org"
        );
        assert_eq!(member_key(" Ann "), "ann");
        assert_eq!(member_key("uid=ann, dc=x"), "uid=ann,dc=x");
    }
}
