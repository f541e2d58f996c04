//! Host tokens (SPEC §8): one per out-of-process plugin instance, the key to its context.
//!
//! The manager mints a token when it builds an instance of a plugin that runs out of process
//! ([`PluginSource::is_out_of_process`]) and revokes it when that instance goes away (stop,
//! restart, disable, rescan removal, shutdown, a failed start). The host service (served by
//! the embedder, `nebula-server` through `nebula-grpc`) asks [`HostTokenRegistry::context`]
//! on every call: the answer is the very `PluginContext` an in-process instance of the same
//! plugin would get, so the scope check and the normalisation stay one code path.
//!
//! Tokens are kept by their SHA-256 digest only: a lookup compares digests, never the secret
//! itself, so its timing tells nothing about the token, and a memory dump holds no live token.

use std::collections::HashMap;
use std::fmt;

use nebula_plugin_api::token::new_token;
use nebula_plugin_api::PluginContext;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};

#[cfg(doc)]
use super::PluginSource;

type TokenDigest = [u8; 32];

/// How an out-of-process instance reaches the host service: sent to the plugin as
/// `x-nebula-host-endpoint` / `x-nebula-host-token` (metadata on every PluginService call) or
/// `NEBULA_HOST_ENDPOINT` / `NEBULA_HOST_TOKEN` (the environment of a process plugin).
#[derive(Clone, PartialEq, Eq)]
pub struct HostAccess {
    /// `unix:///path` or `http://host:port`.
    pub endpoint: String,
    /// The instance's token.
    pub token: String,
}

impl fmt::Debug for HostAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostAccess")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The live host tokens, by digest, and which plugin holds which.
#[derive(Default)]
pub struct HostTokenRegistry {
    inner: RwLock<Tokens>,
}

#[derive(Default)]
struct Tokens {
    contexts: HashMap<TokenDigest, PluginContext>,
    by_plugin: HashMap<String, TokenDigest>,
}

impl fmt::Debug for HostTokenRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        let mut plugins: Vec<&String> = inner.by_plugin.keys().collect();
        plugins.sort();
        f.debug_struct("HostTokenRegistry")
            .field("plugins", &plugins)
            .finish()
    }
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

impl HostTokenRegistry {
    /// The context `token` was minted for, while its instance lives.
    pub fn context(&self, token: &str) -> Option<PluginContext> {
        if token.is_empty() {
            return None;
        }
        self.inner.read().contexts.get(&digest(token)).cloned()
    }

    /// Mints a fresh token for a new instance of `plugin`, revoking the one its previous
    /// instance held.
    pub(crate) fn mint(&self, plugin: &str, ctx: PluginContext) -> Result<String, rand::Error> {
        let token = new_token()?;
        let key = digest(&token);
        let mut inner = self.inner.write();
        if let Some(old) = inner.by_plugin.insert(plugin.to_owned(), key) {
            inner.contexts.remove(&old);
        }
        inner.contexts.insert(key, ctx);
        Ok(token)
    }

    /// Revokes the token of `plugin`'s instance, if it has one.
    pub(crate) fn revoke(&self, plugin: &str) {
        let mut inner = self.inner.write();
        if let Some(old) = inner.by_plugin.remove(plugin) {
            inner.contexts.remove(&old);
        }
    }

    /// How many tokens are live (one per running out-of-process instance).
    pub fn live(&self) -> usize {
        self.inner.read().contexts.len()
    }
}

/// The host service as the manager knows it: where plugins reach it and the tokens it accepts.
#[derive(Debug, Clone)]
pub struct HostServiceLink {
    /// The registry the served host service looks tokens up in.
    pub tokens: std::sync::Arc<HostTokenRegistry>,
    /// The endpoint sent to external gRPC plugins (the TCP one when
    /// `plugins.host_service.bind` is set, else the unix socket).
    pub endpoint: String,
    /// The endpoint given to process plugins, which run on this machine: the unix socket.
    pub local_endpoint: String,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nebula_plugin_api::testing::RecordingHost;
    use nebula_plugin_api::ScopeSet;

    use super::*;

    fn ctx(name: &str) -> PluginContext {
        PluginContext::new(name, ScopeSet::all(), Arc::new(RecordingHost::default()))
    }

    #[test]
    fn a_token_maps_to_its_context_until_replaced_or_revoked() {
        let registry = HostTokenRegistry::default();
        let first = registry.mint("a", ctx("a")).unwrap();
        assert!(first.len() >= 43, "32 random bytes in base64: {first}");
        assert_eq!(registry.context(&first).unwrap().plugin_name(), "a");
        let b = registry.mint("b", ctx("b")).unwrap();
        let second = registry.mint("a", ctx("a")).unwrap();
        assert_ne!(first, second);
        assert!(registry.context(&first).is_none(), "replaced instance");
        assert!(registry.context(&second).is_some());
        assert_eq!(registry.live(), 2);
        registry.revoke("a");
        assert!(registry.context(&second).is_none(), "revoked");
        assert_eq!(registry.context(&b).unwrap().plugin_name(), "b");
        assert!(registry.context("").is_none());
        assert!(registry.context("not-a-token").is_none());
        assert_eq!(registry.live(), 1);
    }

    #[test]
    fn debug_never_shows_a_token() {
        let registry = HostTokenRegistry::default();
        let token = registry.mint("a", ctx("a")).unwrap();
        assert!(!format!("{registry:?}").contains(&token));
        let access = HostAccess {
            endpoint: "unix:///x".into(),
            token: token.clone(),
        };
        assert!(!format!("{access:?}").contains(&token));
    }
}
