DROP TABLE plugin_state;
DROP TABLE events;
DROP TABLE user_identity_tags;
DROP TABLE identity_roles;
DROP TABLE users;
