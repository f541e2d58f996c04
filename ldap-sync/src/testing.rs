//! A real OpenLDAP server for tests (feature `testing`): Debian's `slapd`, started on a
//! loopback port from a configuration and data generated in a temporary directory (no
//! system service, no `cn=config`), stopped (by its PID) when dropped.
//!
//! ```text
//! let people = (0..3).map(Person::numbered).collect::<Vec<_>>();
//! let slapd = Slapd::start(&SlapdOptions::default(), &people, &[Group::new("admins", &["u00000"])])?;
//! slapd.modify("dn: uid=u00001,ou=people,dc=example,dc=org\nchangetype: delete\n")?;
//! ```
//!
//! The directory: `dc=example,dc=org`, people under `ou=people` (`inetOrgPerson`: `uid`,
//! `mail`, `employeeType: disabled` for a disabled one), groups under `ou=groups`
//! (`groupOfNames`). Two accounts: the root DN ([`ROOT_DN`], for changes) and a reader
//! ([`READER_DN`], what the plugin binds as), whose searches without paging stop at
//! [`READER_SIZE_LIMIT`] entries, as on a production server, while paged searches may read
//! everything.
//!
//! [`slapd_available`] tells whether the packages are installed; [`require_slapd`] is what
//! a test calls first: it panics when they are missing and `CI` is set (a skipped check must
//! not pass CI), and otherwise answers `false` so the test can return with a note.

use std::fmt::Write as _;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// Where people are.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
/// Where groups are.
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";
/// The administrator (no limits).
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
/// The administrator's password.
pub const ROOT_PASSWORD: &str = "admin-secret";
/// The account the plugin binds as.
pub const READER_DN: &str = "cn=reader,dc=example,dc=org";
/// The reader's password.
pub const READER_PASSWORD: &str = "reader-secret-0123";
/// Entries a search by the reader may return without paged results.
pub const READER_SIZE_LIMIT: usize = 1000;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const LDAPMODIFY: &str = "/usr/bin/ldapmodify";

/// Whether `slapd`, `slapadd` and `ldapmodify` are installed (Debian's `slapd` and
/// `ldap-utils`).
pub fn slapd_available() -> bool {
    [SLAPD, SLAPADD, LDAPMODIFY]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// Whether a test can run against a real server: `true` when the packages are installed.
/// Without them it panics under `CI` (set by `.ci/run`, which installs them), and otherwise
/// prints why and answers `false`.
pub fn require_slapd() -> bool {
    if slapd_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "slapd/ldap-utils are not installed and CI is set: .ci/run installs them \
         (apt-get install slapd ldap-utils)"
    );
    eprintln!("skipped: slapd and ldap-utils are not installed (apt-get install slapd ldap-utils)");
    false
}

/// One person of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// `uid`.
    pub uid: String,
    /// `mail`, when set.
    pub mail: Option<String>,
    /// Whether the entry has `employeeType: disabled`.
    pub disabled: bool,
}

impl Person {
    /// `u<n>` (five digits) with `u<n>@example.org`, enabled.
    pub fn numbered(n: usize) -> Person {
        Person::new(&format!("u{n:05}"))
    }

    /// `uid` with `<uid>@example.org`, enabled.
    pub fn new(uid: &str) -> Person {
        Person {
            uid: uid.to_owned(),
            mail: Some(format!("{uid}@example.org")),
            disabled: false,
        }
    }

    /// The entry's DN.
    pub fn dn(&self) -> String {
        format!("uid={},{PEOPLE_DN}", self.uid)
    }

    fn ldif(&self, out: &mut String) {
        let _ = write!(
            out,
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {}\ncn: {}\nsn: {}\n",
            self.dn(),
            self.uid,
            self.uid,
            self.uid
        );
        if let Some(mail) = &self.mail {
            let _ = writeln!(out, "mail: {mail}");
        }
        if self.disabled {
            out.push_str("employeeType: disabled\n");
        }
        out.push('\n');
    }
}

/// One group (`groupOfNames`) and the uids of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `cn`.
    pub cn: String,
    /// Members' uids (a `groupOfNames` needs one: an empty group gets the reader).
    pub members: Vec<String>,
}

impl Group {
    /// A group of these uids.
    pub fn new(cn: &str, members: &[&str]) -> Group {
        Group {
            cn: cn.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// The entry's DN.
    pub fn dn(&self) -> String {
        format!("cn={},{GROUPS_DN}", self.cn)
    }

    fn ldif(&self, out: &mut String) {
        let _ = write!(
            out,
            "dn: {}\nobjectClass: groupOfNames\ncn: {}\n",
            self.dn(),
            self.cn
        );
        if self.members.is_empty() {
            let _ = writeln!(out, "member: {READER_DN}");
        }
        for uid in &self.members {
            let _ = writeln!(out, "member: uid={uid},{PEOPLE_DN}");
        }
        out.push('\n');
    }
}

/// How the server listens.
#[derive(Debug, Clone, Default)]
pub struct SlapdOptions {
    /// Also serve TLS (`ldaps://` on a second port, and StartTLS on the first) with a
    /// certificate for `127.0.0.1` signed by a CA generated for the test ([`Slapd::ca_file`]).
    pub tls: bool,
}

/// A running `slapd`.
pub struct Slapd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
}

impl Slapd {
    /// Generates the configuration and the data, loads it with `slapadd`, starts `slapd` and
    /// waits until it accepts connections.
    pub fn start(options: &SlapdOptions, people: &[Person], groups: &[Group]) -> io::Result<Slapd> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("db");
        std::fs::create_dir(&db)?;
        let tls = if options.tls {
            Some(generate_certificates(dir.path())?)
        } else {
            None
        };
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config(dir.path(), &db, tls.as_ref()))?;
        let data = dir.path().join("data.ldif");
        std::fs::write(&data, ldif(people, groups))?;
        run(Command::new(SLAPADD)
            .arg("-q")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&data))?;
        let mut slapd = Slapd {
            dir,
            child: None,
            port: 0,
            tls_port: None,
        };
        slapd.launch(options.tls)?;
        Ok(slapd)
    }

    /// Starts `slapd` on new ports (after [`stop`](Self::stop), or the first time). A port
    /// found free can be taken by another test before slapd binds it: three tries.
    fn launch(&mut self, tls: bool) -> io::Result<()> {
        let mut tries = 0;
        loop {
            match self.launch_once(tls) {
                Err(_) if tries < 2 => {
                    tries += 1;
                    self.stop();
                }
                done => return done,
            }
        }
    }

    fn launch_once(&mut self, tls: bool) -> io::Result<()> {
        let port = free_port()?;
        let tls_port = if tls { Some(free_port()?) } else { None };
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if let Some(tls_port) = tls_port {
            let _ = write!(urls, " ldaps://127.0.0.1:{tls_port}/");
        }
        let log = std::fs::File::create(self.dir.path().join("slapd.log"))?;
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(&urls)
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.port = port;
        self.tls_port = tls_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "slapd did not listen within 30 s: {}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever answered, it must be ours: a slapd that lost its port to another process
        // exits at once, while the connection above reached that other process.
        std::thread::sleep(Duration::from_millis(50));
        self.check_alive()
    }

    /// An error naming how slapd ended, if it has.
    fn check_alive(&mut self) -> io::Result<()> {
        let ended = match self.child.as_mut() {
            Some(child) => child.try_wait()?,
            None => None,
        };
        match ended {
            Some(status) => Err(io::Error::other(format!(
                "slapd exited ({status}): {}",
                self.log()
            ))),
            None => Ok(()),
        }
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<port>` (with [`SlapdOptions::tls`]).
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// The generated CA's certificate (PEM), with [`SlapdOptions::tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Applies an LDIF of changes (`changetype: add | modify | delete`) as the root DN.
    pub fn modify(&self, ldif: &str) -> io::Result<()> {
        let file = self.dir.path().join("change.ldif");
        std::fs::write(&file, ldif)?;
        run(Command::new(LDAPMODIFY)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
                "-f",
            ])
            .arg(&file))
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s); the data stays for [`restart`].
    ///
    /// [`restart`]: Self::restart
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Starts the stopped server again on new ports.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let tls = self.tls_port.is_some();
        self.launch(tls)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM to the child (by its PID), SIGKILL if it is still there after 10 s.
fn terminate(child: &mut Child) {
    // Only our own child, by its PID, not yet reaped (so the PID is still its own).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let output = cmd.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?}: {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The certificate files slapd serves TLS with.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate for `127.0.0.1` and `localhost`, by the `openssl` command.
fn generate_certificates(dir: &Path) -> io::Result<TlsFiles> {
    let path = |name: &str| dir.join(name);
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=Nebula test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(path("ca.key"))
        .arg("-out")
        .arg(path("ca.pem")))?;
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(path("server.key"))
        .arg("-out")
        .arg(path("server.csr")))?;
    std::fs::write(
        path("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(path("server.csr"))
        .arg("-CA")
        .arg(path("ca.pem"))
        .arg("-CAkey")
        .arg(path("ca.key"))
        .arg("-extfile")
        .arg(path("server.ext"))
        .arg("-out")
        .arg(path("server.pem")))?;
    Ok(TlsFiles {
        cert: path("server.pem"),
        key: path("server.key"),
    })
}

fn config(dir: &Path, db: &Path, tls: Option<&TlsFiles>) -> String {
    let mut conf = String::new();
    for schema in ["core", "cosine", "inetorgperson", "nis"] {
        let _ = writeln!(conf, "include /etc/ldap/schema/{schema}.schema");
    }
    let _ = writeln!(conf, "pidfile {}", dir.join("slapd.pid").display());
    let _ = writeln!(conf, "argsfile {}", dir.join("slapd.args").display());
    conf.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
    if let Some(tls) = tls {
        let _ = writeln!(
            conf,
            "TLSCACertificateFile {}",
            dir.join("ca.pem").display()
        );
        let _ = writeln!(conf, "TLSCertificateFile {}", tls.cert.display());
        let _ = writeln!(conf, "TLSCertificateKeyFile {}", tls.key.display());
    }
    let _ = writeln!(
        conf,
        "database mdb\nmaxsize 1073741824\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\n\
         rootpw {ROOT_PASSWORD}\ndirectory {}\nindex objectClass eq\nindex uid eq\n\
         index member eq\n\
         limits dn.exact=\"{READER_DN}\" size.soft={READER_SIZE_LIMIT} \
         size.hard={READER_SIZE_LIMIT} size.prtotal=unlimited\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by * read",
        db.display()
    );
    conf
}

fn ldif(people: &[Person], groups: &[Group]) -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n\
         o: Example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: reader\nuserPassword: {READER_PASSWORD}\n\n"
    );
    for person in people {
        person.ldif(&mut out);
    }
    for group in groups {
        group.ldif(&mut out);
    }
    out
}
