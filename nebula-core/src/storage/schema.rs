//! diesel table definitions; kept in step with `migrations/` by hand (and by the tests).
//! Public for code that measures the engine against plain diesel on the same tables
//! (`nebula-bench`); the engine's own queries are the storage API above.

#![allow(missing_docs)]

diesel::table! {
    users (id) {
        id -> BigInt,
        db_name -> Text,
        username -> Text,
        email -> Nullable<Text>,
        password_hash -> Text,
        is_active -> Bool,
        is_staff -> Bool,
        created_at -> Double,
        updated_at -> Double,
    }
}

diesel::table! {
    identity_roles (name) {
        name -> Text,
        description -> Text,
        is_staff -> Bool,
        updated_by -> Text,
        updated_at -> Double,
    }
}

diesel::table! {
    user_identity_tags (db_name, username) {
        db_name -> Text,
        username -> Text,
        role_tag -> Text,
        updated_by -> Text,
        updated_at -> Double,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        name -> Text,
        payload -> Text,
        created_at -> Double,
    }
}

diesel::table! {
    plugin_state (name) {
        name -> Text,
        enabled -> Bool,
        updated_at -> Double,
        reason -> Text,
    }
}

diesel::table! {
    plugin_sync_leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> Double,
    }
}

diesel::allow_tables_to_appear_in_same_query!(users, user_identity_tags);
