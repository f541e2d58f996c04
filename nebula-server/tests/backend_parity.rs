//! What PostgreSQL refuses and SQLite would store (a NUL byte in text) gets the same answer on
//! both backends: such input is refused or escaped before it reaches the database.

mod support;

use support::{command, Server};

const TOKEN: &str = "backend-parity-installer-token-0123456789";

nebula_core::each_backend! {
    #[test]
    fn a_login_name_with_a_nul_byte_is_refused_like_an_unknown_one(db) {
        let work = db.dir();
        let server = Server::spawn(
            command(work)
                .env("NEBULA__SERVER__BIND", "127.0.0.1:0")
                .env("NEBULA__DATABASE__URL", db.url())
                .env("NEBULA_INSTALLER_TOKEN", TOKEN),
            work,
        );
        let answer = server.login("ad\u{0}min", "a-long-password");
        assert_eq!(answer.status, 401, "{}", answer.body);
        let answer = server.login("nobody", "a-long-password");
        assert_eq!(answer.status, 401, "{}", answer.body);
    }
}
