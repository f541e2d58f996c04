//! Loading and validating configurations.

use std::io::Write;

use super::*;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn defaults_need_no_file() {
    let c = NebulaConfig::load_from(None, no_env()).unwrap();
    assert_eq!(c.server.bind, "127.0.0.1:8000");
    assert_eq!(c.server.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(c.database.url, "sqlite://data/nebula.db");
    assert_eq!(c.plugins.init_timeout(), Duration::from_secs(5));
    assert_eq!(c.plugins.call_timeout(), Duration::from_secs(10));
    assert_eq!(c.plugins.timeout_restart_threshold, 3);
    assert_eq!(c.auth.session_ttl_sec, 3600);
}

#[test]
fn file_and_env_overrides_apply() {
    let f = file(
        "[server]\nbind = \"127.0.0.1:9000\"\n[plugins]\ncall_timeout_sec = 0.5\n\
         [plugins.grants]\nsample_sync = [\"users.read\"]\n\
         [[plugins.external]]\nname = \"ext1\"\nendpoint = \"127.0.0.1:50051\"\n",
    );
    let env = vec![
        (
            "NEBULA__SERVER__BIND".to_owned(),
            "127.0.0.1:9100".to_owned(),
        ),
        (
            "NEBULA__PLUGINS__MAX_TIMEOUT_SEC".to_owned(),
            "60".to_owned(),
        ),
        ("NEBULA_CONFIG".to_owned(), "ignored".to_owned()),
    ];
    let c = NebulaConfig::load_from(Some(f.path()), env).unwrap();
    assert_eq!(c.server.bind, "127.0.0.1:9100");
    assert_eq!(c.plugins.call_timeout(), Duration::from_millis(500));
    assert_eq!(c.plugins.max_timeout_sec, 60.0);
    assert_eq!(c.plugins.grants["sample_sync"], vec!["users.read"]);
    assert_eq!(c.plugins.external[0].name, "ext1");
}

#[test]
fn public_origin_is_an_origin_normalised_once() {
    let c = NebulaConfig::load_from(None, no_env()).unwrap();
    assert_eq!(c.server.public_origin(), Ok(None));
    let f = file("[server]\npublic_origin = \"HTTPS://Nebula.Example.com:443\"\n");
    let c = NebulaConfig::load_from(Some(f.path()), no_env()).unwrap();
    let origin = c.server.public_origin().unwrap().unwrap();
    assert_eq!(origin.to_string(), "https://nebula.example.com");
    let env = vec![(
        "NEBULA__SERVER__PUBLIC_ORIGIN".to_owned(),
        "http://10.0.0.5:8000/admin".to_owned(),
    )];
    let err = NebulaConfig::load_from(None, env).unwrap_err().to_string();
    assert!(err.contains("server.public_origin"), "{err}");
    assert!(err.contains("http://10.0.0.5:8000/admin"), "{err}");
}

#[test]
fn plugin_settings_come_from_the_file_and_the_environment_and_never_show_their_values() {
    let f = file(
        "[plugins.settings.csv_import]\npath = \"/srv/users.csv\"\ndelimiter = \";\"\n\
         [plugins.settings.csv_import.columns]\nemail = \"mail\"\n",
    );
    let env = vec![(
        "NEBULA__PLUGINS__SETTINGS__CSV_IMPORT__BIND_PASSWORD".to_owned(),
        "s3cret-from-env".to_owned(),
    )];
    let c = NebulaConfig::load_from(Some(f.path()), env).unwrap();
    let settings = &c.plugins.settings["csv_import"].0;
    assert_eq!(settings["path"], "/srv/users.csv");
    assert_eq!(settings["columns"]["email"], "mail");
    assert_eq!(settings["bind_password"], "s3cret-from-env");
    let shown = format!("{c:?}");
    assert!(shown.contains("bind_password"), "{shown}");
    assert!(!shown.contains("s3cret-from-env"), "{shown}");
    assert!(!shown.contains("/srv/users.csv"), "{shown}");
}

#[test]
fn call_timeout_is_clamped_to_the_maximum() {
    let f = file("[plugins]\ncall_timeout_sec = 100\nmax_timeout_sec = 30\n");
    let c = NebulaConfig::load_from(Some(f.path()), no_env()).unwrap();
    assert_eq!(c.plugins.call_timeout(), Duration::from_secs(30));
}

#[test]
fn errors_name_the_key_and_the_file() {
    let cases = [
        ("[server]\nbindd = \"x\"\n", "bindd"),
        (
            "[plugins]\ncall_timeout_sec = \"soon\"\n",
            "call_timeout_sec",
        ),
        (
            "[plugins]\ncall_timeout_sec = -1\n",
            "plugins.call_timeout_sec",
        ),
        (
            "[plugins]\nhealth_interval_sec = 1e-10\n",
            "plugins.health_interval_sec",
        ),
        ("[server]\nbind = \"nowhere\"\n", "server.bind"),
        (
            "[plugins]\ntimeout_restart_threshold = 0\n",
            "plugins.timeout_restart_threshold: must be at least 1, got 0",
        ),
        (
            "[plugins]\nhealth_restart_threshold = 0\n",
            "plugins.health_restart_threshold: must be at least 1",
        ),
        ("[plugins]\nmax_crashes = 0\n", "plugins.max_crashes: must be at least 1"),
        (
            "[server]\npublic_origin = \"https://nebula.example.com/\"\n",
            "server.public_origin",
        ),
        (
            "[server]\npublic_origin = \"nebula.example.com\"\n",
            "server.public_origin",
        ),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[[plugins.external]]\nname = \"x\"\n", "endpoint"),
        (
            "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA_INSTALLER_TOKEN\"\n",
            "plugins.external[0].token_env: 'NEBULA_INSTALLER_TOKEN' is one of the core's own secrets",
        ),
        (
            "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA_SESSION_SECRET\"\n",
            "plugins.external[0].token_env: 'NEBULA_SESSION_SECRET'",
        ),
        (
            "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"NEBULA__PLUGINS__SETTINGS__LDAP__PW\"\n",
            "token_env: 'NEBULA__PLUGINS__SETTINGS__LDAP__PW' is a configuration override",
        ),
        (
            "[[plugins.external]]\nname = \"peer\"\nendpoint = \"127.0.0.1:1\"\ntoken_env = \"A B\"\n",
            "plugins.external[0].token_env",
        ),
        ("not toml at all [", "TOML"),
    ];
    for (text, key) in cases {
        let f = file(text);
        let err = NebulaConfig::load_from(Some(f.path()), no_env())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{text:?}: {err}");
        assert!(
            err.contains(&f.path().display().to_string()),
            "{text:?}: {err}"
        );
    }
    let err = NebulaConfig::load_from(
        None,
        vec![("NEBULA__PLUGINS__CALL_TIMEOUT_SEC".into(), "abc".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("call_timeout_sec"), "{err}");
    assert!(NebulaConfig::load_from(Some(Path::new("/nonexistent/x.toml")), no_env()).is_err());
}

#[test]
fn the_host_service_binds_loopback_unless_remote_grpc_is_allowed() {
    let load = |text: &str| NebulaConfig::load_from(Some(file(text).path()), no_env());
    let ok = load("[plugins.host_service]\nbind = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(ok.plugins.host_service.bind.as_deref(), Some("127.0.0.1:0"));
    assert_eq!(
        NebulaConfig::default().plugins.host_service.bind,
        None,
        "the unix socket only, by default"
    );
    let remote = load("[plugins.host_service]\nbind = \"0.0.0.0:7070\"\n").unwrap_err();
    assert!(
        remote.to_string().contains("plugins.host_service.bind")
            && remote.to_string().contains("allow_remote_grpc"),
        "{remote}"
    );
    load("[plugins]\nallow_remote_grpc = true\n[plugins.host_service]\nbind = \"0.0.0.0:7070\"\n")
        .unwrap();
    for (text, key) in [
        (
            "[plugins.host_service]\nbind = \"localhost\"\n",
            "expected IP:PORT",
        ),
        (
            "[plugins.host_service]\nadvertise = \"http://10.0.0.5:7070\"\n",
            "needs plugins.host_service.bind",
        ),
        (
            "[plugins.host_service]\nbind = \"127.0.0.1:7070\"\nadvertise = \"10.0.0.5:7070\"\n",
            "expected http://HOST:PORT",
        ),
    ] {
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
